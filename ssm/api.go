package ssm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// API is the part of the SSM control plane a session needs.
// *github.com/aws/aws-sdk-go-v2/service/ssm.Client satisfies it.
type API interface {
	StartSession(ctx context.Context, in *ssmsdk.StartSessionInput, optFns ...func(*ssmsdk.Options)) (*ssmsdk.StartSessionOutput, error)
	ResumeSession(ctx context.Context, in *ssmsdk.ResumeSessionInput, optFns ...func(*ssmsdk.Options)) (*ssmsdk.ResumeSessionOutput, error)
	TerminateSession(ctx context.Context, in *ssmsdk.TerminateSessionInput, optFns ...func(*ssmsdk.Options)) (*ssmsdk.TerminateSessionOutput, error)
}

var _ API = (*ssmsdk.Client)(nil)

// newAPI builds the SDK client for c (c.API == nil). The returned function
// releases idle HTTP connections of a transport built here.
func newAPI(c *Config) (API, func()) {
	release := func() {}
	var opts []func(*ssmsdk.Options)
	if c.Endpoint != "" {
		ep := c.Endpoint
		opts = append(opts, func(o *ssmsdk.Options) { o.BaseEndpoint = aws.String(ep) })
	}
	if c.RootCAs != nil {
		roots := c.RootCAs
		bc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = roots
		})
		opts = append(opts, func(o *ssmsdk.Options) { o.HTTPClient = bc })
		release = func() { bc.GetTransport().CloseIdleConnections() }
	}
	return ssmsdk.NewFromConfig(c.AWS, opts...), release
}

// StartSessionTimeout bounds one StartSession call made by Dial (SDK
// retries included). The call does not end when Dial's ctx is cancelled
// (see startSessionOwned); it is cut short CloseTimeout after that.
const StartSessionTimeout = 30 * time.Second

// startSessionOwned calls StartSession so that a session the service creates
// is never lost to a cancellation. The request runs under a context that
// ctx does not cancel (bounded by StartSessionTimeout, and by
// c.CloseTimeout once ctx is done): cancelling the HTTP request after it
// reached the service would leave a session whose id the client never
// learns and therefore cannot terminate. When ctx is done by the time the
// response arrives, the session it names is terminated at once (bounded by
// c.CloseTimeout) and ctx's error is returned, wrapped.
func startSessionOwned(ctx context.Context, api API, c *Config) (*ssmsdk.StartSessionOutput, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StartSessionTimeout)
	defer cancel()
	var (
		mu    sync.Mutex
		grace *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		grace = time.AfterFunc(c.CloseTimeout, cancel)
		mu.Unlock()
	})
	out, err := startSession(sctx, api, c)
	stop()
	mu.Lock()
	if grace != nil {
		grace.Stop()
	}
	mu.Unlock()
	cerr := ctx.Err()
	if cerr == nil {
		return out, err
	}
	if err != nil {
		return nil, fmt.Errorf("ssm: StartSession: %w (the call ended with: %v)", cerr, err)
	}
	id := aws.ToString(out.SessionId)
	tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), c.CloseTimeout)
	defer tcancel()
	if terr := terminateSession(tctx, api, id); terr != nil {
		return nil, fmt.Errorf("ssm: dial cancelled after StartSession created session %s; terminating it failed: %v: %w", id, terr, cerr)
	}
	return nil, fmt.Errorf("ssm: dial cancelled; session %s, started meanwhile, was terminated: %w", id, cerr)
}

// startSession calls StartSession with the document and parameters of c.
func startSession(ctx context.Context, api API, c *Config) (*ssmsdk.StartSessionOutput, error) {
	params := map[string][]string{"portNumber": {strconv.Itoa(c.PortNumber)}}
	for k, v := range c.Parameters {
		params[k] = v
	}
	in := &ssmsdk.StartSessionInput{
		Target:       aws.String(c.Target),
		DocumentName: aws.String(c.DocumentName),
		Parameters:   params,
	}
	if c.Reason != "" {
		in.Reason = aws.String(c.Reason)
	}
	out, err := api.StartSession(ctx, in)
	if err != nil {
		return nil, &APIError{Op: "StartSession", Err: err}
	}
	if out == nil || aws.ToString(out.SessionId) == "" || aws.ToString(out.StreamUrl) == "" || aws.ToString(out.TokenValue) == "" {
		return nil, &APIError{Op: "StartSession", Err: errors.New("response lacks SessionId, StreamUrl or TokenValue")}
	}
	return out, nil
}

// resumeSession returns a fresh token for the session, or ErrSessionGone.
func resumeSession(ctx context.Context, api API, id string) (string, error) {
	out, err := api.ResumeSession(ctx, &ssmsdk.ResumeSessionInput{SessionId: aws.String(id)})
	if err != nil {
		var dne *types.DoesNotExistException
		if errors.As(err, &dne) {
			return "", errors.Join(ErrSessionGone, &APIError{Op: "ResumeSession", SessionID: id, Err: err})
		}
		return "", &APIError{Op: "ResumeSession", SessionID: id, Err: err}
	}
	if out == nil || out.TokenValue == nil || *out.TokenValue == "" {
		return "", fmt.Errorf("%w: ResumeSession (session %s) returned no token: the session was terminated or timed out", ErrSessionGone, id)
	}
	return *out.TokenValue, nil
}

// terminateSession calls TerminateSession.
func terminateSession(ctx context.Context, api API, id string) error {
	_, err := api.TerminateSession(ctx, &ssmsdk.TerminateSessionInput{SessionId: aws.String(id)})
	if err != nil {
		return &APIError{Op: "TerminateSession", SessionID: id, Err: err}
	}
	return nil
}
