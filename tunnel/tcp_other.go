//go:build !linux

package tunnel

import (
	"net"
	"time"
)

// setUserTimeout is Linux-only; elsewhere keepalive and our pings suffice.
func setUserTimeout(*net.TCPConn, time.Duration) {}

// visitorListenConfig binds public TCP ports with Go's default keepalive.
var visitorListenConfig net.ListenConfig
