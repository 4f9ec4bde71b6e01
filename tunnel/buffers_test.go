package tunnel

import (
	"bytes"
	"io"
	"testing"
)

// However many directions are busy at once, at most maxLargeBufs large
// buffers are lent; the rest get medium ones, and returned buffers can be
// lent again.
func TestLargeBuffersAreBounded(t *testing.T) {
	var lent []copyBuf
	defer func() {
		for _, b := range lent {
			b.release()
		}
	}()
	free := maxLargeBufs - len(largeLent) // other tests' pipes have ended, but to be sure
	large := 0
	for range maxLargeBufs + 10 {
		b := busyBuf()
		lent = append(lent, b)
		if len(*b.b) == largeBufSize {
			large++
		}
	}
	if large != free {
		t.Fatalf("%d large buffers lent at once, want %d", large, free)
	}
	if b := busyBuf(); len(*b.b) != mediumBufSize {
		t.Fatalf("a %d-byte buffer lent past the bound", len(*b.b))
	} else {
		b.release()
	}
	lent[0].release()
	lent = lent[1:]
	b := busyBuf()
	lent = append(lent, b)
	if len(*b.b) != largeBufSize {
		t.Fatal("a returned large buffer was not lent again")
	}
}

// copyAdaptive carries every byte in order across its changes of buffer:
// small, then large once busy, then small again when it trickles.
func TestCopyAdaptiveKeepsEveryByte(t *testing.T) {
	var src bytes.Buffer
	for i := range 3 * largeBufSize {
		src.WriteByte(byte(i * 7))
	}
	want := bytes.Clone(src.Bytes())
	r := io.MultiReader(&src, bytes.NewReader([]byte("tail")))
	var dst bytes.Buffer
	if err := copyAdaptive(&dst, r, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), append(want, "tail"...)) {
		t.Fatalf("copied %d bytes, not the %d sent in order", dst.Len(), len(want)+4)
	}
	if n := len(largeLent); n != 0 {
		t.Fatalf("%d large buffers still lent after the copy", n)
	}
}
