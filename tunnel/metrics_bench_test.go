package tunnel

import (
	"io"
	"sync/atomic"
	"testing"
)

// chunkReader fills each read from src, forever, as a busy socket would:
// the least work a real read does per chunk (a socket adds a system call).
type chunkReader struct{ src []byte }

func (r chunkReader) Read(p []byte) (int, error) { return copy(p, r.src), nil }

var chunkSrc = make([]byte, largeBufSize)

// limitedChunks is total bytes of chunkReader.
func limitedChunks(total int64) io.Reader { return io.LimitReader(chunkReader{src: chunkSrc}, total) }

// BenchmarkCopyCounting is the copy loop with and without its byte counter,
// side by side: what counting every chunk costs.
func BenchmarkCopyCounting(b *testing.B) {
	const total = 64 << 20
	b.Run("uncounted", func(b *testing.B) {
		b.SetBytes(total)
		for range b.N {
			copyAdaptive(io.Discard, limitedChunks(total), nil, nil)
		}
	})
	b.Run("counted", func(b *testing.B) {
		var n atomic.Uint64
		b.SetBytes(total)
		for range b.N {
			copyAdaptive(io.Discard, limitedChunks(total), nil, &n)
		}
		if n.Load() != uint64(b.N)*total {
			b.Fatalf("counted %d bytes, copied %d", n.Load(), uint64(b.N)*total)
		}
	})
}
