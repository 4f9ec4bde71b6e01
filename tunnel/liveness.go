package tunnel

import (
	"net"
	"sync/atomic"
	"time"
)

// liveConn wraps a relay–node connection and remembers when bytes last
// arrived. Any inbound byte — data, a window update, a pong — proves the peer
// alive, so a ping starved behind a bulk transfer cannot make a live peer
// look dead, and a peer that stops sending anything is caught even while our
// own data still flows out.
type liveConn struct {
	net.Conn
	lastRead atomic.Int64 // unix nanoseconds
}

func newLiveConn(c net.Conn) *liveConn {
	lc := &liveConn{Conn: c}
	lc.lastRead.Store(time.Now().UnixNano())
	return lc
}

func (c *liveConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// silentFor is how long the peer has sent nothing.
func (c *liveConn) silentFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, c.lastRead.Load()))
}

// watchPeer calls dead once the peer behind c has been silent for timeout,
// checking a few times per timeout, and returns; it returns at once when
// done is closed.
func watchPeer(done <-chan struct{}, c *liveConn, timeout time.Duration, dead func(silent time.Duration)) {
	t := time.NewTicker(max(timeout/6, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			if silent := c.silentFor(now); silent >= timeout {
				dead(silent)
				return
			}
		}
	}
}
