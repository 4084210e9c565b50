package sshx

import "sync"

// ringSize is the capacity of each direction's buffer in a tunnel
// connection: two SSH packets' worth (OpenSSH's maximum packet payload is
// 32 KiB), so the pump can fill one while the user drains the other.
const ringSize = 64 << 10

// ringPool recycles ring buffers across connections.
var ringPool = sync.Pool{New: func() any { b := make([]byte, ringSize); return &b }}

// ring is a fixed-size circular byte buffer whose memory comes from
// ringPool only while it holds data: an idle connection holds none. It is
// not safe for concurrent use: the owner's mutex guards it, and a producer
// or consumer may work on a segment returned by writable/readable outside
// the mutex as long as the other side only touches the disjoint part.
type ring struct {
	buf []byte  // nil while released
	bp  *[]byte // buf's pool entry
	r   int     // index of the first buffered byte
	n   int     // number of buffered bytes
}

// take gives the ring a pooled buffer if it has none.
func (b *ring) take() {
	if b.bp == nil {
		b.bp = ringPool.Get().(*[]byte)
		b.buf, b.r, b.n = *b.bp, 0, 0
	}
}

// release returns the buffer to the pool if the ring is empty. Only call it
// when no segment is in use outside the mutex.
func (b *ring) release() {
	if b.n == 0 {
		b.drop()
	}
}

// drop returns the buffer to the pool, discarding what it holds.
func (b *ring) drop() {
	if b.bp != nil {
		ringPool.Put(b.bp)
	}
	*b = ring{}
}

// full reports whether there is no free space.
func (b *ring) full() bool { return b.n == len(b.buf) }

// readable returns the first contiguous run of buffered bytes.
func (b *ring) readable() []byte {
	end := b.r + b.n
	if end > len(b.buf) {
		end = len(b.buf)
	}
	return b.buf[b.r:end]
}

// writable returns the first contiguous run of free space.
func (b *ring) writable() []byte {
	if b.n == len(b.buf) {
		return nil
	}
	w := b.r + b.n
	if w >= len(b.buf) {
		w -= len(b.buf)
		return b.buf[w:b.r]
	}
	return b.buf[w:]
}

// consume drops k buffered bytes from the front.
func (b *ring) consume(k int) {
	b.r += k
	if b.r >= len(b.buf) {
		b.r -= len(b.buf)
	}
	b.n -= k
}

// read copies buffered bytes into p and consumes them.
func (b *ring) read(p []byte) int {
	n := 0
	for n < len(p) && b.n > 0 {
		k := copy(p[n:], b.readable())
		b.consume(k)
		n += k
	}
	return n
}

// write copies as much of p as fits into the free space.
func (b *ring) write(p []byte) int {
	n := 0
	for n < len(p) && b.n < len(b.buf) {
		k := copy(b.writable(), p[n:])
		b.n += k
		n += k
	}
	return n
}
