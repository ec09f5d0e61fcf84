package config

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Reloader re-reads the configuration on demand (SIGHUP) and when the config
// file changes, and hands the reloadable part of a valid result to Apply. A
// new configuration that fails to load or validate is refused with a log line
// and the running one is kept.
type Reloader struct {
	src     Source
	file    string
	current Config
	apply   func(Config)
	log     *zap.Logger
	observe func(result string)
}

// Results of a reload attempt, as passed to the observer set with
// WithObserver (the config_reloads_total{result} metric).
const (
	// ReloadApplied: reloadable settings changed and were applied.
	ReloadApplied = "applied"
	// ReloadUnchanged: the new configuration is valid but changes no
	// reloadable setting.
	ReloadUnchanged = "unchanged"
	// ReloadRefused: the new configuration did not load or validate (or the
	// file was empty); the running one is kept.
	ReloadRefused = "refused"
)

// NewReloader starts from the running configuration current, loaded from src.
// apply is called with the new effective configuration (the running one with
// its reloadable fields replaced) after each successful reload.
func NewReloader(src Source, loaded *Loaded, apply func(Config), log *zap.Logger) *Reloader {
	return &Reloader{src: src, file: loaded.File, current: loaded.Config, apply: apply, log: log, observe: func(string) {}}
}

// WithObserver reports the result of every reload attempt (ReloadApplied,
// ReloadUnchanged or ReloadRefused) to obs, so a refused configuration is
// visible in metrics and not only in a log line.
func (r *Reloader) WithObserver(obs func(result string)) *Reloader {
	r.observe = obs
	return r
}

// Reload performs one reload and reports whether anything was applied.
func (r *Reloader) Reload() bool {
	result := r.reload()
	r.observe(result)
	return result == ReloadApplied
}

func (r *Reloader) reload() string {
	// An in-place rewrite truncates the file before writing it; a reload
	// in between would see an empty file, i.e. the defaults, and could
	// briefly drop the allow-lists (fail open). Refuse an empty file.
	src := r.src
	read := src.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	empty := false
	src.ReadFile = func(name string) ([]byte, error) {
		data, err := read(name)
		if err == nil && name == r.file && len(bytes.TrimSpace(data)) == 0 {
			empty = true
		}
		return data, err
	}
	loaded, err := Load(src)
	if err == nil && empty {
		r.log.Warn("configuration reload refused: the file is empty (perhaps mid-write); keeping the running configuration", zap.String("file", r.file))
		return ReloadRefused
	}
	if err == nil {
		err = loaded.Config.Validate()
	}
	if err != nil {
		r.log.Error("configuration reload refused; keeping the running configuration", zap.Error(err))
		return ReloadRefused
	}
	next := loaded.Config
	if pending := r.current.RestartRequired(&next); len(pending) > 0 {
		r.log.Warn("some changed settings take effect only after a restart", zap.Strings("settings", pending))
	}
	eff := r.current
	changed := false
	for _, f := range Fields() {
		if !f.Reload {
			continue
		}
		nv := f.value(&next)
		if !reflect.DeepEqual(f.value(&eff).Interface(), nv.Interface()) {
			f.value(&eff).Set(nv)
			changed = true
		}
	}
	if !changed {
		r.log.Info("configuration reloaded; nothing to apply")
		return ReloadUnchanged
	}
	r.current = eff
	r.apply(eff)
	r.log.Info("configuration reloaded and applied")
	return ReloadApplied
}

// Run reloads on every value from signals (SIGHUP) and on every change of the
// config file until ctx ends. The file's directory is watched rather than the
// file, because a mounted ConfigMap is updated by swapping a symlink.
func (r *Reloader) Run(ctx context.Context, signals <-chan os.Signal) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if r.file != "" {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		defer w.Close()
		if err := w.Add(filepath.Dir(r.file)); err != nil {
			return err
		}
		events, errs = w.Events, w.Errors
	}
	base := filepath.Base(r.file)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-signals:
			r.log.Info("SIGHUP received; reloading configuration")
			r.Reload()
		case ev := <-events:
			name := filepath.Base(ev.Name)
			if name == base || name == "..data" {
				r.log.Info("configuration file changed; reloading", zap.String("file", r.file))
				r.Reload()
			}
		case err := <-errs:
			r.log.Warn("watching the configuration file failed", zap.Error(err))
		}
	}
}
