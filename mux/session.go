package mux

import (
	"cmp"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
)

// SessionConfig is how p2prc configures yamux. Zero values mean the defaults
// documented on each field.
type SessionConfig struct {
	// StreamWindow is each stream's flow-control window: the most one stream
	// may have in flight, and so the most the receiver buffers for it. One
	// stream's throughput is capped at StreamWindow/RTT. Zero: 1 MiB, which
	// carries 80 Mbit/s over a 100 ms path and bounds a stalled visitor to
	// 1 MiB of relay memory.
	StreamWindow uint32

	// AcceptBacklog is how many opened streams may wait for the peer to
	// accept them. Zero: 1024, so a burst of visitors is not refused.
	AcceptBacklog int

	// WriteTimeout bounds how long one frame may wait to be written before
	// the connection is judged dead. Frames are at most a copy buffer long
	// (see tunnel), so even a slow uplink moves one well within it. Zero: 30 s.
	WriteTimeout time.Duration

	// OpenTimeout bounds how long an opened stream may wait for the peer's
	// acknowledgement before the session is judged dead. Zero: 30 s.
	OpenTimeout time.Duration

	// Logger receives yamux's own messages at debug level. Every condition
	// yamux logs also reaches us as an error, which the caller logs with
	// context, so these are only for debugging. Nil discards them.
	Logger *slog.Logger
}

const (
	defaultStreamWindow  = 1 << 20
	defaultAcceptBacklog = 1024
	defaultWriteTimeout  = 30 * time.Second
	defaultOpenTimeout   = 30 * time.Second
)

// yamuxConfig turns c into yamux's configuration.
//
// Keepalive is off: the control protocol's own pings (with deadlines) detect
// dead peers and measure latency, and the kernel's TCP_USER_TIMEOUT bounds
// unacknowledged data; yamux's pings would share the data queue and could be
// starved by bulk transfers. StreamCloseTimeout is off: a half-closed stream
// is a visitor waiting for a reply, and the proxies at both ends close their
// streams when their connections end, so no stream outlives its connection.
func (c SessionConfig) yamuxConfig() *yamux.Config {
	y := yamux.DefaultConfig()
	y.AcceptBacklog = cmp.Or(c.AcceptBacklog, defaultAcceptBacklog)
	y.EnableKeepAlive = false
	y.ConnectionWriteTimeout = cmp.Or(c.WriteTimeout, defaultWriteTimeout)
	y.StreamOpenTimeout = cmp.Or(c.OpenTimeout, defaultOpenTimeout)
	y.StreamCloseTimeout = 0
	y.MaxStreamWindowSize = cmp.Or(c.StreamWindow, defaultStreamWindow)
	y.LogOutput = nil
	y.Logger = yamuxLogger{c.Logger}
	return y
}

// Client starts the node's end of a session on w. The session owns w.
func Client(w *Wire, c SessionConfig) (*yamux.Session, error) {
	s, err := yamux.Client(w, c.yamuxConfig())
	if err != nil {
		return nil, fmt.Errorf("yamux configuration: %w", err)
	}
	return s, nil
}

// Server starts the relay's end of a session on w. The session owns w.
//
// The accept backlog stays large on the relay too: yamux also uses it to
// bound the streams this end has opened and the peer not yet acknowledged,
// and the relay opens one per visitor (a backlog of 2 cut new connections
// per second by a third). What a node may open itself — one stream — the
// caller enforces by ending the session at a second (see tunnel).
func Server(w *Wire, c SessionConfig) (*yamux.Session, error) {
	s, err := yamux.Server(w, c.yamuxConfig())
	if err != nil {
		return nil, fmt.Errorf("yamux configuration: %w", err)
	}
	return s, nil
}

// yamuxLogger sends yamux's log lines to slog at debug level.
type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any) { y.log(fmt.Sprint(v...)) }

func (y yamuxLogger) Printf(format string, v ...any) { y.log(fmt.Sprintf(format, v...)) }

func (y yamuxLogger) Println(v ...any) { y.log(fmt.Sprintln(v...)) }

func (y yamuxLogger) log(msg string) {
	if y.l != nil {
		y.l.Debug(strings.TrimSpace(msg), "component", "yamux")
	}
}
