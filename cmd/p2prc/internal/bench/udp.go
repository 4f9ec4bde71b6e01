package bench

import (
	"context"
	"encoding/binary"
	"net"
	"time"
)

// udpDrain is how long the sink may still receive after the sender stops:
// datagrams queued in the relay and node are delivered, not lost.
const udpDrain = 300 * time.Millisecond

// udpLoad sends udpDatagram-byte datagrams at a fixed offered rate (bits
// per second) for the run's duration and counts what the sink received.
// It reports the delivered rate and the loss.
func udpLoad(rate float64) func(context.Context, *bench, *path) (result, error) {
	return func(ctx context.Context, b *bench, p *path) (result, error) {
		dst, err := net.ResolveUDPAddr("udp", p.addrs[svcUDP])
		if err != nil {
			return result{}, err
		}
		c, err := net.DialUDP("udp", nil, dst)
		if err != nil {
			return result{}, err
		}
		defer c.Close()
		c.SetWriteBuffer(4 << 20)

		run := b.svc.udp.begin()
		sent := pace(ctx, c, run, rate, b.cfg.Duration)
		select {
		case <-time.After(udpDrain):
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
		got, bytes := b.svc.udp.counts()
		loss := 0.0
		if sent > 0 {
			loss = 100 * float64(sent-got) / float64(sent)
		}
		return result{
			figures: []figure{
				{metric: "Gbit/s delivered", value: float64(bytes) * 8 / b.cfg.Duration.Seconds() / 1e9},
				{metric: "loss %", value: max(loss, 0), compare: byPoints},
			},
			ops: float64(bytes) / 1e9,
		}, nil
	}
}

// paceTick is how often the sender catches up with its schedule; each tick
// sends the datagrams that fell due since the last.
const paceTick = 500 * time.Microsecond

// pace sends datagrams on c at rate bits per second for d and returns how
// many it sent. A datagram the kernel refuses counts as sent (and so as
// lost): the offered load is what the schedule says.
func pace(ctx context.Context, c *net.UDPConn, run uint64, rate float64, d time.Duration) int64 {
	buf := make([]byte, udpDatagram)
	binary.BigEndian.PutUint64(buf, run)
	perSecond := rate / (udpDatagram * 8)
	total := int64(perSecond * d.Seconds())
	start := time.Now()
	var sent int64
	for sent < total && ctx.Err() == nil {
		due := min(int64(perSecond*time.Since(start).Seconds()), total)
		for ; sent < due; sent++ {
			binary.BigEndian.PutUint64(buf[8:], uint64(sent))
			c.Write(buf)
		}
		time.Sleep(paceTick)
	}
	return sent
}
