package sshx

import (
	"fmt"
	"time"
)

// keepalive sends keepalive@openssh.com global requests every interval and
// closes the client when one is not answered within timeout. Any reply
// (OpenSSH answers with a failure) proves the path is alive.
func (c *Client) keepalive(interval, timeout time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
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
		timer := time.NewTimer(timeout)
		select {
		case err := <-reply:
			timer.Stop()
			if err != nil {
				c.closeWith(fmt.Errorf("sshx: keepalive: %w", err))
				return
			}
			c.log.Debug("sshx: keepalive answered")
		case <-timer.C:
			c.log.Warn("sshx: keepalive timeout, closing", "timeout", timeout)
			c.closeWith(fmt.Errorf("%w (no reply within %v)", ErrKeepaliveTimeout, timeout))
			<-reply // SendRequest returns once the connection is closed
			return
		}
	}
}
