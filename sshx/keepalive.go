package sshx

import (
	"fmt"
	"time"
)

// ProgressReporter may be implemented by the net.Conn passed to NewClient
// (*ssm.Session does). LastProgress returns when the transport last made
// progress: received new data from the peer, even data the SSH layer cannot
// use yet because it waits behind a gap the transport is still repairing,
// or saw that repair advance. A peer repeating itself is not progress.
//
// A keepalive reply travels behind such a gap: while LastProgress keeps
// moving, the path is alive and the client does not time the keepalive
// out; it does once the transport has made no progress for
// Config.KeepaliveTimeout.
type ProgressReporter interface {
	LastProgress() time.Time
}

// keepalive sends keepalive@openssh.com global requests every interval and
// closes the client when one is not answered within timeout, or, when the
// transport is a ProgressReporter, when neither the answer nor any progress
// of the transport came within timeout. Any reply (OpenSSH answers with a
// failure) proves the path is alive.
func (c *Client) keepalive(interval, timeout time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	progress, _ := c.conn.(ProgressReporter)
	reply := make(chan error, 1)
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		go func() { // ends when the request is answered or the connection closes
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		sent := time.Now()
		timer := time.NewTimer(timeout)
	wait:
		select {
		case err := <-reply:
			timer.Stop()
			if err != nil {
				c.closeWith(fmt.Errorf("sshx: keepalive: %w", err))
				return
			}
			c.log.Debug("sshx: keepalive answered")
		case <-timer.C:
			if progress != nil {
				// Data is still arriving (for instance retransmissions
				// repairing a gap the reply waits behind): the path is
				// alive. Wait until timeout has passed without progress.
				if last := progress.LastProgress(); last.After(sent) {
					if left := timeout - time.Since(last); left > 0 {
						c.log.Debug("sshx: keepalive reply delayed, transport still making progress", "waited", time.Since(sent).Round(time.Millisecond))
						timer.Reset(left)
						goto wait
					}
				}
			}
			c.log.Warn("sshx: keepalive timeout, closing", "timeout", timeout)
			c.closeWith(fmt.Errorf("%w (no reply within %v)", ErrKeepaliveTimeout, timeout))
			<-reply // SendRequest returns once the connection is closed
			return
		}
	}
}
