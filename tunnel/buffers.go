package tunnel

import "sync"

// Copy buffers come in three sizes. A direction of a pipe reads into a
// small buffer while it is idle or trickling, so a thousand idle
// connections cost a thousand small buffers. Once a read fills it, the
// direction is busy and borrows a larger one until a read returns less
// than a small buffer's worth.
//
// The buffer a busy direction reads into is also the size of the yamux
// frames it writes, and each frame costs yamux a hand-off between
// goroutines, two allocations and a wake-up of the reader at the far end:
// a 256 KiB frame carries a stream at about 1.7 times the rate of a 32 KiB
// one (BenchmarkStreamCopy). So a busy direction borrows a large buffer
// while the process holds fewer than maxLargeBufs of them, and a medium one
// otherwise, which bounds copy buffers at maxLargeBufs×256 KiB plus 32 KiB
// per busy direction beyond that — however many visitors send at once.
const (
	smallBufSize  = 4 << 10
	mediumBufSize = 32 << 10
	largeBufSize  = 256 << 10

	// maxLargeBufs bounds the large buffers lent at once: 16 MiB.
	maxLargeBufs = 64
)

var (
	smallBufs  = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	mediumBufs = sync.Pool{New: func() any { b := make([]byte, mediumBufSize); return &b }}
	largeBufs  = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}

	largeLent = make(chan struct{}, maxLargeBufs) // one token per large buffer lent
)

// copyBuf is a pooled buffer and the pool it goes back to.
type copyBuf struct {
	b    *[]byte
	pool *sync.Pool
}

func smallBuf() copyBuf { return copyBuf{smallBufs.Get().(*[]byte), &smallBufs} }

// busyBuf lends a large buffer if fewer than maxLargeBufs are out, else a
// medium one.
func busyBuf() copyBuf {
	select {
	case largeLent <- struct{}{}:
		return copyBuf{largeBufs.Get().(*[]byte), &largeBufs}
	default:
		return copyBuf{mediumBufs.Get().(*[]byte), &mediumBufs}
	}
}

// release gives the buffer back; the zero copyBuf is a no-op.
func (c copyBuf) release() {
	if c.b == nil {
		return
	}
	c.pool.Put(c.b)
	if c.pool == &largeBufs {
		<-largeLent
	}
}
