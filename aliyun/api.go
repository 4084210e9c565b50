package aliyun

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/utils"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	credentials "github.com/aliyun/credentials-go/credentials"
)

// API is the part of the ECS OpenAPI this package calls.
// *github.com/alibabacloud-go/ecs-20140526/v7/client.Client satisfies it.
type API interface {
	StartTerminalSessionWithContext(ctx context.Context, req *ecs.StartTerminalSessionRequest, rt *dara.RuntimeOptions) (*ecs.StartTerminalSessionResponse, error)
	EndTerminalSessionWithContext(ctx context.Context, req *ecs.EndTerminalSessionRequest, rt *dara.RuntimeOptions) (*ecs.EndTerminalSessionResponse, error)
}

// NewECSClient builds the SDK's ECS client for c (Region, Credential,
// Endpoint, RootCAs), with an HTTP client of its own whose idle
// connections the returned close function releases.
func NewECSClient(c Config) (client *ecs.Client, closeIdle func(), err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	cred := c.Credential
	if cred == nil {
		cred, err = credentials.NewCredential(nil)
		if err != nil {
			return nil, nil, &ConfigError{Field: "Credential", Problem: "no Alibaba Cloud credentials found (set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, a profile, or a RAM role): " + err.Error()}
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
	}
	hc := &httpClient{c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	cfg := &openapi.Config{
		RegionId:   dara.String(c.Region),
		Credential: cred,
		HttpClient: hc,
	}
	if c.Endpoint != "" {
		host, proto, _ := splitEndpoint(c.Endpoint)
		cfg.Endpoint = dara.String(host)
		cfg.Protocol = dara.String(proto)
	}
	client, err = ecs.NewClient(cfg)
	if err != nil {
		return nil, nil, &ConfigError{Field: "Endpoint", Problem: err.Error()}
	}
	return client, tr.CloseIdleConnections, nil
}

// httpClient is the SDK's HttpClient over a net/http client we own.
type httpClient struct{ c *http.Client }

func (h *httpClient) Call(req *http.Request, _ *http.Transport) (*http.Response, error) {
	return h.c.Do(req)
}
