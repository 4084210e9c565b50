// Package deadline is a settable deadline whose expiry closes a channel, the
// way net.Pipe implements deadlines: the read and write deadlines of the
// net.Conns in ssm and aliyun.
package deadline

import (
	"sync"
	"time"
)

// Deadline is a settable deadline. Make one with [Make]; the zero value is
// not usable.
type Deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	at     time.Time
	cancel chan struct{} // closed when the deadline passes
}

// Make returns a Deadline that is not set.
func Make() Deadline { return Deadline{cancel: make(chan struct{})} }

// IsClosed reports whether c is closed, without blocking.
func IsClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Set sets the deadline; the zero time means none. A time in the past
// closes the Wait channel at once.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = t
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its callback to close cancel
	}
	d.timer = nil
	closed := IsClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		c := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// Wait returns a channel that is closed when the deadline passes.
func (d *Deadline) Wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// At returns the deadline last set, and whether one is set.
func (d *Deadline) At() (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at, !d.at.IsZero()
}

// Stop releases the timer. A later Set works as on a Deadline whose
// timer never ran.
func (d *Deadline) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its callback to close cancel
	}
	d.timer = nil
}
