package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// dialers is how many connections the memory workload opens at once.
const dialers = 32

// settle is how long open connections sit idle before memory is read, so
// what is measured is holding them, not opening them.
const settle = 500 * time.Millisecond

// memory reports the relay's and node's resident memory when they were
// ready (idle) and with cfg.OpenConns connections open through them, each
// having carried one exchange, so both ends of every pipe are set up.
func memory(ctx context.Context, b *bench, p *path) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conns := make([]*net.TCPConn, b.cfg.OpenConns)
	defer closeAll(conns)
	stop := context.AfterFunc(ctx, func() { closeAll(conns) })
	defer stop()

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan int)
	)
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for i := range next {
				c, err := dialTCP(ctx, p.addrs[svcEcho])
				if err == nil {
					conns[i] = c
					err = exchange(c, buf)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("opening connection %d of %d: %w", i+1, len(conns), err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range conns {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	var r result
	for _, np := range p.processes() {
		u, err := readUsage(np.c.pid())
		if err != nil {
			return result{}, fmt.Errorf("reading the %s's memory: %w", np.role, err)
		}
		r.figures = append(r.figures,
			figure{metric: np.role + " RSS idle MB", value: mb(p.idle[np.role].RSS), compare: noCompare},
			figure{metric: fmt.Sprintf("%s RSS, %d conns MB", np.role, len(conns)), value: mb(u.RSS), compare: noCompare},
		)
	}
	return r, nil
}

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }
