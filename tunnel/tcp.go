package tunnel

import (
	"net"
	"time"
)

// tuneTCP sets the socket options of a relay–node connection. Keepalive
// probes notice a vanished peer on an idle connection; TCP_USER_TIMEOUT
// makes the kernel give up on data the peer has not acknowledged within
// userTimeout, so a write to a dead peer fails instead of hanging.
func tuneTCP(c net.Conn, userTimeout time.Duration) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
	if userTimeout > 0 {
		setUserTimeout(tc, userTimeout)
	}
}
