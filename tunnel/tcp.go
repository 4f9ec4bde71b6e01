package tunnel

import (
	"net"
	"time"
)

// tuneTCP sets the socket options of a relay–node connection: keepalive
// probes so the kernel notices a vanished peer on an idle connection.
func tuneTCP(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
}
