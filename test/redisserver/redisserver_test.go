package redisserver

import (
	"bufio"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// command sends one inline command and returns the first reply line.
func command(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if got := command(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING = %q, want +PONG", got)
	}
	if got := command(t, s.Addr(), "CONFIG GET save"); got != "*2" {
		t.Fatalf("CONFIG GET save = %q", got)
	}
	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("server still answers after Stop")
	}
	s.Stop() // idempotent
	s.Restart()
	if got := command(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING after Restart = %q, want +PONG", got)
	}
}

func TestURL(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		wantUser string
		wantPass string
		authCmd  string
	}{
		{name: "no auth"},
		{name: "password", opts: []Option{WithPassword("pw1")}, wantPass: "pw1", authCmd: "AUTH pw1"},
		{name: "acl user", opts: []Option{WithUser("alice", "pw2")}, wantUser: "alice", wantPass: "pw2", authCmd: "AUTH alice pw2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, tt.opts...)
			u, err := url.Parse(s.URL())
			if err != nil {
				t.Fatalf("parse URL %q: %v", s.URL(), err)
			}
			if u.Scheme != "redis" || u.Host != s.Addr() || u.Path != "/0" {
				t.Fatalf("URL = %q", s.URL())
			}
			pass, _ := u.User.Password()
			if u.User.Username() != tt.wantUser || pass != tt.wantPass {
				t.Fatalf("URL credentials = %q/%q, want %q/%q", u.User.Username(), pass, tt.wantUser, tt.wantPass)
			}
			if tt.authCmd == "" {
				return
			}
			if got := command(t, s.Addr(), "PING"); !strings.HasPrefix(got, "-NOAUTH") {
				t.Fatalf("unauthenticated PING = %q, want -NOAUTH", got)
			}
			if got := command(t, s.Addr(), tt.authCmd); got != "+OK" {
				t.Fatalf("%s = %q, want +OK", tt.authCmd, got)
			}
		})
	}
}

// A paused server keeps its port but answers nothing; Resume brings it back.
// With the append-only file a killed and restarted server keeps its data.
func TestPauseResumeAndAppendOnlyRestart(t *testing.T) {
	s := Start(t, WithAppendOnly())
	if got := command(t, s.Addr(), "SET k v"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	s.Pause()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a paused server answered PING")
	}
	s.Resume()
	if got := command(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING after Resume = %q", got)
	}
	s.Stop()
	s.Restart()
	if got := command(t, s.Addr(), "GET k"); got != "$1" {
		t.Fatalf("GET k after kill and restart = %q, want the value back ($1)", got)
	}
}

// Sentinels started against a master see it and its replica.
func TestSentinel(t *testing.T) {
	master := Start(t)
	replica := Start(t, WithReplicaOf(master.Addr()))
	sentinel := StartSentinel(t, SentinelOptions{MasterName: "m", MasterAddr: master.Addr(), Quorum: 1})
	if got := command(t, sentinel.Addr(), "SENTINEL get-master-addr-by-name m"); got != "*2" {
		t.Fatalf("SENTINEL get-master-addr-by-name = %q, want a two-element reply", got)
	}
	if got := command(t, replica.Addr(), "ROLE"); got != "*5" {
		t.Fatalf("ROLE on the replica = %q, want the five-element replica reply", got)
	}
}

// TestWithBind: the server listens on the chosen address only, and Addr and
// URL name it (the cluster suite binds the node address so pods reach it).
func TestWithBind(t *testing.T) {
	s := Start(t, WithBind("127.0.0.2"))
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.2" {
		t.Fatalf("Addr = %q (%v), want host 127.0.0.2", s.Addr(), err)
	}
	if got := command(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING on %s = %q, want +PONG", s.Addr(), got)
	}
	if u, err := url.Parse(s.URL()); err != nil || u.Host != s.Addr() {
		t.Fatalf("URL = %q, want host %s", s.URL(), s.Addr())
	}
	if err := ping(net.JoinHostPort("127.0.0.1", port)); err == nil {
		t.Fatalf("the server also answers on 127.0.0.1:%s; it must listen on the bound address only", port)
	}
}
