package tunnel

import "sync"

// group runs the goroutines a session owns and waits for them. Once closed
// it refuses new ones, so nothing starts after the wait has begun.
type group struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// spawn runs f in a goroutine of the group. It reports false, and does not
// run f, once the group is closed.
func (g *group) spawn(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// closeAndWait refuses new goroutines and waits for the running ones.
func (g *group) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
