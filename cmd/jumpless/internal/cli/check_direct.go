package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jumpless/jumpless/link"
	"github.com/jumpless/jumpless/portmux"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/ssm/ssmlink"
)

// directProbeWait is how long check waits, in direct mode, for the agent to
// refuse a connect or the server to speak first. The agent never confirms a
// connect, so silence after it is reported as "no refusal".
const directProbeWait = 3 * time.Second

// checkDirect runs the network steps of direct mode: for each address a
// port session (StartSession, agent handshake) and a connect through it.
func (c *checker) checkDirect(ctx context.Context, env *Env, o *tunnelOpts, awsCfg aws.Config, pool *x509.CertPool, remotes []string) bool {
	if len(remotes) == 0 {
		fmt.Fprintf(c.out, "       (direct mode: pass --to HOST:PORT to start a port session and try the address)\n")
		return true
	}
	tr := ssmlink.New(ssm.Config{
		AWS: awsCfg, Endpoint: o.endpointURL, RootCAs: pool, Target: o.target, Reason: o.reason, Logger: o.logger(env),
	})
	ok := true
	for _, r := range remotes {
		if !c.checkDirectAddr(ctx, tr, o, r) {
			ok = false
		}
	}
	return ok
}

func (c *checker) checkDirectAddr(ctx context.Context, tr *ssmlink.Transport, o *tunnelOpts, r string) bool {
	step := stepDial + " " + r
	l, mode, err := tr.DialPort(ctx, r)
	if err != nil {
		d := diagnose(err, o)
		if d.step == stepCredentials {
			d.step = stepStart
		}
		c.diag(d)
		return false
	}
	sl := l.(*ssmlink.Link)
	c.ok(stepStart, "port session "+l.ID()+" for "+r)
	how := "mux: connections share the session"
	if !mode.Mux {
		how = "basic port forwarding: one session per connection"
	}
	c.ok(stepAgent, "agent "+sl.AgentVersion()+" ("+how+")")

	pctx, cancel := context.WithTimeout(ctx, directProbeWait)
	defer cancel()
	start := time.Now()
	var probeErr error
	if mode.Mux {
		s, err := portmux.Client(l, portmux.Config{Addr: r, SessionID: l.ID(), KeepAlive: mode.KeepAlive, ConnectErrors: mode.ConnectErrors})
		if err != nil {
			l.Close()
			c.fail(step, err.Error(), "")
			return false
		}
		defer s.Close()
		conn, err := s.Open(pctx)
		if err == nil {
			probeErr = conn.Ready(pctx)
			conn.Close()
		} else {
			probeErr = err
		}
	} else {
		defer l.Close()
		l.SetReadDeadline(time.Now().Add(directProbeWait))
		_, probeErr = l.Read(make([]byte, 1))
	}
	switch {
	case probeErr == nil:
		c.ok(step, fmt.Sprintf("reachable from the instance: the server answered (%v)", time.Since(start).Round(time.Millisecond)))
		return true
	case errors.Is(probeErr, context.DeadlineExceeded) || errors.Is(probeErr, os.ErrDeadlineExceeded):
		c.ok(step, fmt.Sprintf("no refusal within %v (the agent does not confirm connects; a server that waits for the client, such as PostgreSQL, stays silent)", directProbeWait))
		return true
	case errors.Is(probeErr, link.ErrConnect) || errors.Is(probeErr, link.ErrForbidden):
		d := diagnose(probeErr, o)
		c.failCause(step, d.problem, d.cause, d.advice)
		return false
	default:
		c.fail(step, sanitize(oneLine(probeErr.Error())), "")
		return false
	}
}
