package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"time"
)

// maxSamples bounds the latencies one worker keeps; requests beyond it
// are counted but not sampled.
const maxSamples = 1 << 20

// requests keeps cfg.Concurrency connections open, each sending a request
// and waiting for its reply, over and over, for the run's duration.
func requests(ctx context.Context, b *bench, p *path) (result, error) {
	ctx, cancel := deadlineFor(ctx, b.cfg.Duration)
	defer cancel()
	n := b.cfg.Concurrency
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		c, err := dialTCP(ctx, p.addrs[svcEcho])
		if err == nil {
			err = exchange(c, make([]byte, msgSize)) // the whole path is up
		}
		if err != nil {
			closeAll(conns)
			return result{}, fmt.Errorf("opening connection %d: %w", i+1, err)
		}
		conns[i] = c
	}
	stop := context.AfterFunc(ctx, func() { closeAll(conns) })
	defer stop()
	defer closeAll(conns)

	ws := make([]worker, n)
	start := time.Now()
	end := start.Add(b.cfg.Duration)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i].keptAlive(c, end)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	count, lat, _, err := merge(ws)
	if err != nil {
		return result{}, err
	}
	return result{
		figures: append([]figure{{metric: "req/s", value: float64(count) / elapsed.Seconds()}}, percentiles(lat)...),
		ops:     float64(count),
	}, nil
}

// connections runs cfg.Concurrency workers, each opening a connection,
// sending a request, reading the reply and waiting for the server's close,
// over and over. The latency is from the start of the dial to the reply.
func connections(ctx context.Context, b *bench, p *path) (result, error) {
	ctx, cancel := deadlineFor(ctx, b.cfg.Duration)
	defer cancel()
	ws := make([]worker, b.cfg.Concurrency)
	start := time.Now()
	end := start.Add(b.cfg.Duration)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i].oneShots(ctx, p.addrs[svcOneShot], end)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	count, lat, failed, err := merge(ws)
	if err != nil {
		return result{}, err
	}
	r := result{
		figures: append([]figure{{metric: "conn/s", value: float64(count) / elapsed.Seconds()}}, percentiles(lat)...),
		ops:     float64(count),
	}
	if failed > 0 {
		r.note = fmt.Sprintf("%d of %d connections failed", failed, failed+count)
	}
	return r, nil
}

// worker is one request loop's tally.
type worker struct {
	count   int64
	failed  int64
	samples []time.Duration
	err     error
}

func (w *worker) record(d time.Duration) {
	w.count++
	if len(w.samples) < maxSamples {
		w.samples = append(w.samples, d)
	}
}

// keptAlive exchanges requests on c until end.
func (w *worker) keptAlive(c *net.TCPConn, end time.Time) {
	buf := make([]byte, msgSize)
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		if err := exchange(c, buf); err != nil {
			w.err = err
			return
		}
		w.record(time.Since(t0))
	}
}

// exchange sends one request on c and reads its reply.
func exchange(c *net.TCPConn, buf []byte) error {
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

// maxFailures is how many failed connections in a row end a worker: the
// path is broken, not busy.
const maxFailures = 100

// oneShots opens a connection per request until end.
func (w *worker) oneShots(ctx context.Context, addr string, end time.Time) {
	buf := make([]byte, msgSize)
	inRow := 0
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		if err := oneShot(ctx, addr, buf); err != nil {
			w.failed++
			if inRow++; inRow >= maxFailures {
				w.err = fmt.Errorf("%d connections in a row failed, the last with: %w", inRow, err)
				return
			}
			continue
		}
		inRow = 0
		w.record(time.Since(t0))
	}
}

// oneShot makes one connection, one request and one reply, then waits for
// the server to close (so the server side holds the TIME_WAIT, as with
// HTTP/1.0, and the bench does not run out of ports).
func oneShot(ctx context.Context, addr string, buf []byte) error {
	c, err := dialTCP(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := exchange(c, buf); err != nil {
		return err
	}
	if n, err := c.Read(buf[:1]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("the server did not close after its reply (%d bytes, %v)", n, err)
	}
	return nil
}

// merge sums the workers' tallies.
func merge(ws []worker) (count int64, lat []time.Duration, failed int64, err error) {
	for _, w := range ws {
		if w.err != nil && err == nil {
			err = w.err
		}
		count += w.count
		failed += w.failed
		lat = append(lat, w.samples...)
	}
	if err == nil && count == 0 {
		err = errors.New("no request completed")
	}
	return count, lat, failed, err
}

// percentiles returns the p50 and p99 figures of lat, in milliseconds.
func percentiles(lat []time.Duration) []figure {
	slices.Sort(lat)
	return []figure{
		{metric: "p50 ms", value: ms(quantile(lat, 0.50))},
		{metric: "p99 ms", value: ms(quantile(lat, 0.99))},
	}
}

// quantile returns the q-quantile of sorted (nearest rank), or 0 if empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
