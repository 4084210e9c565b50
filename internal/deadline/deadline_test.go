package deadline

import (
	"testing"
	"time"
)

// TestSetAfterStopDoesNotBlock guards a hang: a Conn closed (Stop) while a
// future deadline was set, then given a new deadline (pgx clears its
// cancellation deadline after the connection failed) blocked for ever
// waiting for the stopped timer's callback.
func TestSetAfterStopDoesNotBlock(t *testing.T) {
	d := Make()
	d.Set(time.Now().Add(time.Hour))
	d.Stop()
	done := make(chan struct{})
	go func() {
		d.Set(time.Time{})
		d.Set(time.Now().Add(-time.Second))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Set after Stop blocked")
	}
	if !IsClosed(d.Wait()) {
		t.Fatal("a deadline in the past did not close Wait")
	}
}

// TestDeadlineFiresAndResets: a deadline closes Wait when it passes; the
// zero time reopens it; Stop after the timer fired does not block.
func TestDeadlineFiresAndResets(t *testing.T) {
	d := Make()
	d.Set(time.Now().Add(10 * time.Millisecond))
	select {
	case <-d.Wait():
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline did not fire")
	}
	d.Stop()
	d.Set(time.Time{})
	if IsClosed(d.Wait()) {
		t.Fatal("the zero time did not reopen Wait")
	}
	if _, ok := d.At(); ok {
		t.Fatal("At reports a deadline after the zero time")
	}
}
