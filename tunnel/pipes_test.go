package tunnel

import "testing"

// A reset that arrives before its pipe is added still stops the pipe, and
// the resets remembered for pipes that never come stay bounded.
func TestEarlyResetIsRemembered(t *testing.T) {
	var ps pipes
	ps.reset(7)
	if ps.add(7, &pipe{}) {
		t.Fatal("a pipe whose stream was already reset was added")
	}
	if !ps.add(7+2, &pipe{}) {
		t.Fatal("an unrelated pipe was refused")
	}
	for id := uint32(100); id < 100+3*maxEarlyResets; id += 2 {
		ps.reset(id)
	}
	if len(ps.early) > maxEarlyResets {
		t.Fatalf("%d early resets remembered, want at most %d", len(ps.early), maxEarlyResets)
	}
	last := uint32(100 + 3*maxEarlyResets - 2)
	if ps.add(last, &pipe{}) {
		t.Fatal("the most recent early reset was forgotten")
	}
	ps.remove(7 + 2)
	ps.closeAll()
	if ps.add(1001, &pipe{}) {
		t.Fatal("a pipe was added after closeAll")
	}
}
