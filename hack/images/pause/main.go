// Command pause is the pod sandbox's pause container, a Go port of
// Kubernetes' build/pause/linux/pause.c: it holds the pod's namespaces open
// by doing nothing, reaps the zombies it inherits as PID 1 of the pod's PID
// namespace (SIGCHLD + wait4), and exits 0 on SIGINT or SIGTERM. hack/images
// builds it static (CGO_ENABLED=0) into registry.k8s.io/pause:3.10 because no
// registry is reachable from the test machine.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// notFirstWarning is pause.c's warning when it is not PID 1.
const notFirstWarning = "Warning: pause should be the first process"

// version is set by hack/images through -ldflags -X main.version.
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Printf("pause.go %s\n", version)
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// Warned only once the handlers are in place, so the line also tells a
	// parent (the tests) that SIGTERM now ends pause with exit code 0.
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, notFirstWarning)
	}
	os.Exit(loop(sigs, reap))
}

// loop waits for signals: SIGCHLD reaps, SIGINT and SIGTERM end the loop with
// exit code 0, as pause.c does. It returns when sigs is closed, with 0 too.
func loop(sigs <-chan os.Signal, reapFn func() (int, error)) int {
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			if _, err := reapFn(); err != nil {
				fmt.Fprintln(os.Stderr, "pause: reap:", err)
			}
		default:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
			return 0
		}
	}
	return 0
}

// reap collects every exited child without blocking and says how many it
// collected. No children left (ECHILD) is not an error. The loop is bounded
// by the number of exited children, which is finite.
func reap() (int, error) {
	n := 0
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ECHILD):
			return n, nil
		case err != nil:
			return n, fmt.Errorf("wait4: %w", err)
		case pid <= 0:
			return n, nil
		}
		n++
	}
}
