package tunnel

import (
	"cmp"
	"container/list"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// UDP defaults shared by relay and node.
const (
	// defaultUDPIdle is how long a flow may stay quiet before it expires
	// (SPEC: 60 s).
	defaultUDPIdle = 60 * time.Second
	// defaultUDPMaxFlows caps the flows of one UDP mapping.
	defaultUDPMaxFlows = 1024

	// udpQueueBytes bounds the frames waiting for one UDP link's writer,
	// and udpQueueDelay how long they may wait: a datagram is dropped rather
	// than queued behind others that have waited that long. At 1 Gbit/s the
	// bytes are 33 ms of traffic, enough to ride out a busy machine's
	// scheduling stalls; on a slower link the delay bounds what a link that
	// cannot keep up adds to latency.
	udpQueueBytes = 4 << 20
	udpQueueDelay = 100 * time.Millisecond

	// udpReadBufSize is what a UDP link reads from its stream at once.
	udpReadBufSize = 256 << 10

	// maxUDPPayload is the largest datagram a socket can deliver.
	maxUDPPayload = 1<<16 - 1

	// maxEvictIdle is how quiet a flow must have been (or half the idle
	// timeout, if shorter) for a new visitor to take its place when its
	// mapping is at the flow cap.
	maxEvictIdle = time.Second

	// evictLook bounds how many flows one new visitor looks at when its
	// mapping is at the cap, so a flood costs a bounded effort per datagram.
	evictLook = 16
)

// Queue buffers come from pools, one per size, shared by every link: a
// batch that outgrows its buffer moves to the next size up, and a written
// batch's buffer goes back to its pool. A link at 1 Gbit/s swings between
// batches of a few datagrams and of hundreds; growing a fresh slice each
// time (as append does) cost the relay a fifth of its CPU in copies and
// garbage collection (pprof, p2prc bench --workloads udp-1g). A quiet link
// holds no buffer; the pools hand theirs back to the collector over time.
var queueBufSizes = [...]int{64 << 10, 256 << 10, 1 << 20, udpQueueBytes}

var queueBufs [len(queueBufSizes)]sync.Pool

// getQueueBuf returns an empty buffer holding at least n bytes: pooled
// when n fits the largest size (always, for queued frames).
func getQueueBuf(n int) []byte {
	for i, size := range queueBufSizes {
		if n <= size {
			if b, ok := queueBufs[i].Get().(*[]byte); ok {
				return (*b)[:0]
			}
			return make([]byte, 0, size)
		}
	}
	return make([]byte, 0, n)
}

// putQueueBuf gives a buffer back to the pool of its size.
func putQueueBuf(b []byte) {
	for i, size := range queueBufSizes {
		if cap(b) == size {
			queueBufs[i].Put(&b)
			return
		}
	}
}

// udpQueue holds the encoded frames waiting for one UDP link's writer. It is
// bounded in bytes: a frame that does not fit is dropped and counted, never
// waited for, so whoever feeds it (the relay's port loop above all) never
// blocks on a slow link. The writer takes everything queued at once and
// writes it with one stream write: under load, datagrams batch by themselves.
type udpQueue struct {
	mu      sync.Mutex
	pending []byte // from getQueueBuf, or nil
	since   int64  // when pending last went from empty to not, unix ns
	closed  bool   // no more frames; the writer ends once pending is written
	aborted bool   // the writer ends now; pending is discarded

	wake    chan struct{} // one token: pending went from empty to not
	dropped atomic.Uint64 // frames refused because the queue was full
}

func newUDPQueue() *udpQueue { return &udpQueue{wake: make(chan struct{}, 1)} }

// put queues one control frame (open or close). It reports false, counting
// a drop, when the queue is full, and false without counting once the queue
// is closed.
func (q *udpQueue) put(t mux.DatagramType, flow uint32, payload []byte) bool {
	return q.putAt(t, flow, payload, 0)
}

// putData queues one datagram that arrived at now (unix ns). Besides a full
// queue, it drops the datagram when what is queued has waited longer than
// udpQueueDelay: the writer is stuck, and a late datagram is worth less
// than the latency it would add to every one after it.
func (q *udpQueue) putData(flow uint32, payload []byte, now int64) bool {
	return q.putAt(mux.DatagramData, flow, payload, now)
}

func (q *udpQueue) putAt(t mux.DatagramType, flow uint32, payload []byte, now int64) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	first := len(q.pending) == 0
	if len(q.pending)+mux.DatagramHeaderSize+len(payload) > udpQueueBytes ||
		(now != 0 && !first && now-q.since > int64(udpQueueDelay)) {
		q.mu.Unlock()
		q.dropped.Add(1)
		return false
	}
	if first {
		q.since = cmp.Or(now, time.Now().UnixNano())
	}
	if need := len(q.pending) + mux.DatagramHeaderSize + len(payload); need > cap(q.pending) {
		b := append(getQueueBuf(need), q.pending...)
		putQueueBuf(q.pending)
		q.pending = b
	}
	q.pending, _ = mux.AppendDatagram(q.pending, t, flow, payload) // payloads come from sockets: ≤ 65,535
	q.mu.Unlock()
	if first {
		q.signal()
	}
	return true
}

func (q *udpQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close lets the writer finish what is queued, then end.
func (q *udpQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// abort ends the writer at once; what is queued is dropped.
func (q *udpQueue) abort() {
	q.mu.Lock()
	q.closed, q.aborted = true, true
	putQueueBuf(q.pending)
	q.pending = nil
	q.mu.Unlock()
	q.signal()
}

// take waits for queued frames and returns all of them, in a buffer the
// writer hands back with recycle; ok is false when the writer should end.
func (q *udpQueue) take() (b []byte, ok bool) {
	for {
		q.mu.Lock()
		if q.aborted {
			q.mu.Unlock()
			return nil, false
		}
		if len(q.pending) > 0 {
			b, q.pending = q.pending, nil
			q.mu.Unlock()
			return b, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.wake
	}
}

// recycle gives a written batch's buffer back.
func (q *udpQueue) recycle(b []byte) { putQueueBuf(b) }

// writeTo writes queued frames to w until the queue ends or a write fails.
func (q *udpQueue) writeTo(w io.Writer) error {
	for {
		b, ok := q.take()
		if !ok {
			return nil
		}
		_, err := w.Write(b)
		q.recycle(b)
		if err != nil {
			return err
		}
	}
}

// activity is when a flow last carried a datagram, either way.
type activity struct{ last atomic.Int64 } // unix nanoseconds

func (a *activity) touch(now int64) { a.last.Store(now) }

func (a *activity) quietFor(now int64) time.Duration {
	return time.Duration(now - a.last.Load())
}

// evictIdle is how quiet a flow must be to give way to a new visitor.
func evictIdle(idle time.Duration) time.Duration { return min(maxEvictIdle, idle/2) }

// flowOrder keeps a mapping's flows oldest first, for the flow cap's policy:
// when the mapping is full, a new visitor takes the place of the oldest flow
// that has been quiet for a while; if there is none, the new visitor's
// datagram is dropped and counted. Flows still active are moved to the back
// as they are passed over (a second chance), so the search stays short.
type flowOrder[F interface{ quietFor(int64) time.Duration }] struct {
	l list.List
}

func (o *flowOrder[F]) push(f F) *list.Element { return o.l.PushBack(f) }

func (o *flowOrder[F]) remove(e *list.Element) { o.l.Remove(e) }

func (o *flowOrder[F]) len() int { return o.l.Len() }

// victim returns the oldest flow among the first evictLook that has been
// quiet for at least minIdle, moving the active ones it passes to the back.
func (o *flowOrder[F]) victim(now int64, minIdle time.Duration) (F, bool) {
	for range min(evictLook, o.l.Len()) {
		e := o.l.Front()
		f := e.Value.(F)
		if f.quietFor(now) >= minIdle {
			return f, true
		}
		o.l.MoveToBack(e)
	}
	var zero F
	return zero, false
}
