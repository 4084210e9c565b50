package ssmtest

import (
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrRDSAuthToken is matched by every error VerifyRDSAuthToken returns.
var ErrRDSAuthToken = errors.New("ssmtest: RDS IAM auth token rejected")

// rdsEmptyPayloadHash is the SHA-256 of an empty payload, the payload hash
// of a presigned RDS connect URL.
const rdsEmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// VerifyRDSAuthToken checks an RDS IAM authentication token (the presigned
// "connect" URL that github.com/aws/aws-sdk-go-v2/feature/rds/auth builds)
// the way RDS does: SigV4 for service "rds-db" with this server's
// credentials and region, Action=connect, DBUser == user, signed for host
// "host:port", within X-Amz-Expires (at most 900 s) of X-Amz-Date. RDS
// checks more (the IAM policy's rds-db:connect resource); that part is not
// modelled. The error (matching ErrRDSAuthToken) names what did not match
// and never contains the token.
func (s *Server) VerifyRDSAuthToken(token, host string, port int, user string) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrRDSAuthToken, fmt.Sprintf(format, a...))
	}
	// "host:port/?Action=..." as AWS documents it; aws-sdk-go-v2 leaves
	// out the "/" (the canonical path is "/" either way).
	hostPort, rawQuery, ok := strings.Cut(token, "?")
	hostPort = strings.TrimSuffix(hostPort, "/")
	if !ok || strings.Contains(hostPort, "/") {
		return fail("not a presigned URL (want host:port/?Action=connect&...)")
	}
	if want := net.JoinHostPort(host, strconv.Itoa(port)); hostPort != want {
		return fail("signed for %s, not %s", hostPort, want)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fail("query does not parse")
	}
	get := func(k string) string { return q.Get(k) }
	if get("Action") != "connect" {
		return fail("Action is %q, want connect", get("Action"))
	}
	if get("DBUser") != user {
		return fail("DBUser is %q, want %q", get("DBUser"), user)
	}
	if get("X-Amz-Algorithm") != sigV4Algorithm {
		return fail("X-Amz-Algorithm is %q", get("X-Amz-Algorithm"))
	}
	cp := strings.Split(get("X-Amz-Credential"), "/")
	if len(cp) != 5 || cp[4] != "aws4_request" {
		return fail("malformed X-Amz-Credential")
	}
	akid, day, region, service := cp[0], cp[1], cp[2], cp[3]
	if subtle.ConstantTimeCompare([]byte(akid), []byte(s.cfg.AccessKeyID)) != 1 {
		return fail("signed with an unknown access key")
	}
	if region != s.cfg.Region {
		return fail("signed for region %s, want %s", region, s.cfg.Region)
	}
	if service != "rds-db" {
		return fail("signed for service %s, want rds-db", service)
	}
	if subtle.ConstantTimeCompare([]byte(get("X-Amz-Security-Token")), []byte(s.cfg.SessionToken)) != 1 {
		return fail("security token does not match the credentials")
	}
	amzDate := get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || amzDate[:8] != day {
		return fail("malformed X-Amz-Date")
	}
	exp, err := strconv.Atoi(get("X-Amz-Expires"))
	if err != nil || exp < 1 || exp > 900 {
		return fail("X-Amz-Expires %q not in 1..900", get("X-Amz-Expires"))
	}
	now := time.Now()
	if now.Before(t.Add(-sigV4MaxSkew)) || now.After(t.Add(time.Duration(exp)*time.Second)) {
		return fail("expired or not yet valid (signed at %s, valid %d s)", amzDate, exp)
	}
	if get("X-Amz-SignedHeaders") != "host" {
		return fail("X-Amz-SignedHeaders is %q, want host", get("X-Amz-SignedHeaders"))
	}
	sig := get("X-Amz-Signature")
	q.Del("X-Amz-Signature")
	canonical := strings.Join([]string{"GET", "/", canonicalQuery(q), "host:" + hostPort + "\n", "host", rdsEmptyPayloadHash}, "\n")
	if !hmac.Equal([]byte(s.signV4(canonical, amzDate, day, region, service)), []byte(sig)) {
		return fail("signature does not match")
	}
	return nil
}
