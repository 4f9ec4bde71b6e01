package tunnel

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Thousands of visitor connections opened and closed leave nothing behind:
// no goroutine, no stream, and no growth in memory.
func TestSoakManyConnections(t *testing.T) {
	leakCheck(t)
	const (
		conns   = 3000
		workers = 32
		budget  = 60 * time.Second // bound on the test's time, not a performance target
	)
	relay := startRelay(t, relayOpts{})
	_, ms := startNode(t, relay, []Expose{tcpExpose(startEcho(t))}, nil)
	port := ms[0].BlindPort

	run := func(n int) (done int64) {
		var next, ok atomic.Int64
		deadline := time.Now().Add(budget)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n) && time.Now().Before(deadline); i = next.Add(1) {
					want := payload(uint64(i), 512)
					if got, err := exchange(port, want); err == nil && bytes.Equal(got, want) {
						ok.Add(1)
					} else {
						t.Errorf("connection failed: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		return ok.Load()
	}

	run(200) // warm up pools and caches
	base, heapBefore := settle(t)
	done := run(conns)
	if done < conns {
		t.Fatalf("only %d of %d connections completed within %v", done, conns, budget)
	}
	after, heapAfter := settle(t)
	t.Logf("%d connections: goroutines %d -> %d, heap in use %d KiB -> %d KiB", done, base, after, heapBefore>>10, heapAfter>>10)
	if after > base {
		t.Errorf("goroutines grew from %d to %d over %d connections", base, after, done)
	}
	if heapAfter > heapBefore+8<<20 {
		t.Errorf("heap in use grew from %d KiB to %d KiB over %d connections", heapBefore>>10, heapAfter>>10, done)
	}
}

// settle waits for connections to wind down and returns the goroutine count
// and the heap in use after a collection.
func settle(t *testing.T) (goroutines int, heapInUse uint64) {
	t.Helper()
	prev := -1
	for range 100 { // at most ~5 s
		n := runtime.NumGoroutine()
		if n == prev {
			break
		}
		prev = n
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}
