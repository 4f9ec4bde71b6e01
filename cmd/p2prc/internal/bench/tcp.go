package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// bulkChunk is what a bulk sender hands the kernel per write.
const bulkChunk = 128 << 10

// bulk sends as fast as it can on streams connections at once for the
// run's duration, then half-closes each and waits for the sink's count of
// what arrived. Throughput is what arrived over the time until the last
// count came back.
func bulk(streams int) func(context.Context, *bench, *path) (result, error) {
	return func(ctx context.Context, b *bench, p *path) (result, error) {
		ctx, cancel := deadlineFor(ctx, b.cfg.Duration)
		defer cancel()
		conns := make([]*net.TCPConn, streams)
		for i := range conns {
			c, err := dialTCP(ctx, p.addrs[svcDiscard])
			if err != nil {
				closeAll(conns)
				return result{}, err
			}
			conns[i] = c
		}
		stop := context.AfterFunc(ctx, func() { closeAll(conns) })
		defer stop()

		start := time.Now()
		end := start.Add(b.cfg.Duration)
		counts := make([]uint64, streams)
		errs := make([]error, streams)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				counts[i], errs[i] = sendBulk(c, end)
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		closeAll(conns)
		var total uint64
		for i := range counts {
			if errs[i] != nil {
				return result{}, fmt.Errorf("stream %d: %w", i+1, errs[i])
			}
			total += counts[i]
		}
		return result{
			figures: []figure{{metric: "Gbit/s", value: float64(total) * 8 / elapsed.Seconds() / 1e9}},
			ops:     float64(total) / 1e9,
		}, nil
	}
}

// sendBulk writes to c until end, then half-closes it and returns how many
// bytes the sink says it received.
func sendBulk(c *net.TCPConn, end time.Time) (uint64, error) {
	buf := make([]byte, bulkChunk)
	c.SetWriteDeadline(end.Add(ioTimeout))
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := c.CloseWrite(); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	var n [8]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return 0, fmt.Errorf("waiting for the sink's count: %w", err)
	}
	return binary.BigEndian.Uint64(n[:]), nil
}

// dialTCP connects to addr, giving up with ctx.
func dialTCP(ctx context.Context, addr string) (*net.TCPConn, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func closeAll(conns []*net.TCPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
