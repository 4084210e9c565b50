package ssmtest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// mgsPost sends a CreateControlChannel-shaped request, signed for service
// (unsigned when service is "").
func mgsPost(t *testing.T, srv *ssmtest.Server, path, service string) (int, []byte) {
	t.Helper()
	body := []byte(`{"MessageSchemaVersion":"1.0","RequestId":"8b6d3c9e-6b1a-4f7e-9d0a-2f5b1c3d4e5f"}`)
	req, err := http.NewRequest(http.MethodPost, srv.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if service != "" {
		ak, sk := srv.Credentials()
		h := sha256.Sum256(body)
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: ak, SecretAccessKey: sk},
			req, hex.EncodeToString(h[:]), service, srv.Region(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, err := srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestCreateControlChannelRefusesUnsignedAndWrongService guards the
// gateway's SigV4 check: the agent signs MGS calls for "ssmmessages"; an
// unsigned call or one signed for "ssm" is refused, a good one gets HTTP
// 201 with the XML token body the agent parses.
func TestCreateControlChannelRefusesUnsignedAndWrongService(t *testing.T) {
	srv := newServer(t, ssmtest.Config{TLS: true})
	const path = "/v1/control-channel/" + instance
	if code, _ := mgsPost(t, srv, path, ""); code != http.StatusForbidden {
		t.Errorf("unsigned CreateControlChannel: HTTP %d, want 403", code)
	}
	if code, b := mgsPost(t, srv, path, "ssm"); code != http.StatusForbidden || !strings.Contains(string(b), "InvalidSignatureException") {
		t.Errorf("CreateControlChannel signed for ssm: HTTP %d %s, want 403 InvalidSignatureException", code, b)
	}
	code, b := mgsPost(t, srv, path, "ssmmessages")
	var out struct {
		MessageSchemaVersion string
		TokenValue           string
	}
	if code != http.StatusCreated || xml.Unmarshal(b, &out) != nil || out.TokenValue == "" || out.MessageSchemaVersion != "1.0" {
		t.Fatalf("CreateControlChannel: HTTP %d %s, want 201 with an XML TokenValue", code, b)
	}
	// CreateDataChannel for a session that is not a real agent's.
	if code, _ := mgsPost(t, srv, "/v1/data-channel/ssmtest-nosuchsession", "ssmmessages"); code != http.StatusNotFound {
		t.Errorf("CreateDataChannel for an unknown session: HTTP %d, want 404", code)
	}
	if len(srv.Agents()) != 0 {
		t.Errorf("agents %v before any control channel", srv.Agents())
	}
}
