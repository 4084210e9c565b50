// Package dbauth supplies database logins without a stored password, for
// package dialer's connectors (dialer.Credentials):
//
//   - [RDSIAM]: an RDS IAM authentication token for every new connection
//     (github.com/aws/aws-sdk-go-v2/feature/rds/auth), signed with the
//     region and credentials of an aws.Config;
//   - [Secret]: the username and password of an AWS Secrets Manager secret
//     (RDS-managed secrets too), fetched on the first connection, cached,
//     and fetched again once after the database refused it, so that a
//     password rotation during a long job costs one re-fetch.
//
// Passwords and tokens never appear in errors or logs.
package dbauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	rdsauth "github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/jumpless/jumpless/dialer"
)

// ErrInvalidConfig is matched by configuration errors of this package.
var ErrInvalidConfig = errors.New("dbauth: invalid config")

// RDSIAM makes an RDS IAM authentication token the password of every new
// connection. The database user must be granted rds_iam (PostgreSQL) or
// be IDENTIFIED WITH AWSAuthenticationPlugin (MySQL), and the caller needs
// rds-db:connect on it (see the README's Credentials section).
type RDSIAM struct {
	// AWS holds the credentials that sign the token and, unless Region is
	// set, the region. Required.
	AWS aws.Config
	// Region is the database's region. "": AWS.Region.
	Region string
	// User is the database user. "": the DSN's user.
	User string
}

var _ dialer.Credentials = (*RDSIAM)(nil)

// Login returns a fresh token for addr (the database endpoint's
// "host:port" as RDS knows it, e.g. "mydb.abc.us-east-1.rds.amazonaws.com:5432",
// not a local forward) and user. Tokens are valid for 15 minutes; a new one
// is made for every connection.
func (r *RDSIAM) Login(ctx context.Context, addr, user string) (dialer.Login, error) {
	if r.User != "" {
		user = r.User
	}
	region := r.Region
	if region == "" {
		region = r.AWS.Region
	}
	switch {
	case user == "":
		return dialer.Login{}, fmt.Errorf("%w: RDS IAM needs the database user: put it in the DSN or set RDSIAM.User", ErrInvalidConfig)
	case region == "":
		return dialer.Login{}, fmt.Errorf("%w: RDS IAM needs the database's region: set RDSIAM.Region or AWS.Region", ErrInvalidConfig)
	case r.AWS.Credentials == nil:
		return dialer.Login{}, fmt.Errorf("%w: RDS IAM needs AWS credentials (config.LoadDefaultConfig)", ErrInvalidConfig)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return dialer.Login{}, fmt.Errorf("%w: RDS IAM needs the database's host:port, got %q", ErrInvalidConfig, addr)
	}
	tok, err := rdsauth.BuildAuthToken(ctx, addr, region, user, r.AWS.Credentials)
	if err != nil {
		return dialer.Login{}, fmt.Errorf("dbauth: RDS IAM token for %s@%s: %w", user, addr, err)
	}
	return dialer.Login{User: user, Password: tok, Cleartext: true}, nil
}

// SecretsAPI is the Secrets Manager call Secret needs.
// *github.com/aws/aws-sdk-go-v2/service/secretsmanager.Client satisfies it.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ SecretsAPI = (*secretsmanager.Client)(nil)

// SecretValue is the JSON of a database secret, as RDS and the Secrets
// Manager console write it: username and password, and optionally engine,
// host, port and dbname.
type SecretValue struct {
	Username string
	Password string
	Engine   string // "mysql", "postgres", ...; "" if absent
	Host     string // "" if absent
	Port     int    // 0 if absent
	DBName   string // "" if absent
}

// String leaves the password out.
func (v SecretValue) String() string {
	return fmt.Sprintf("{Username:%s Password:<redacted> Engine:%s Host:%s Port:%d DBName:%s}", v.Username, v.Engine, v.Host, v.Port, v.DBName)
}

// ParseSecret parses a secret string: a JSON object with "username" and
// "password" strings and optional "engine", "host", "port" (number or
// string) and "dbname". Errors never quote the secret.
func ParseSecret(s string) (SecretValue, error) {
	var raw map[string]any
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return SecretValue{}, errors.New("dbauth: secret is not a JSON object (want {\"username\":...,\"password\":...})")
	}
	str := func(k string) (string, error) {
		switch v := raw[k].(type) {
		case nil:
			return "", nil
		case string:
			return v, nil
		default:
			return "", fmt.Errorf("dbauth: secret field %q is not a string", k)
		}
	}
	var v SecretValue
	var err error
	for _, f := range []struct {
		k string
		p *string
	}{{"username", &v.Username}, {"password", &v.Password}, {"engine", &v.Engine}, {"host", &v.Host}, {"dbname", &v.DBName}} {
		if *f.p, err = str(f.k); err != nil {
			return SecretValue{}, err
		}
	}
	switch p := raw["port"].(type) {
	case nil:
	case float64:
		v.Port = int(p)
	case string:
		if v.Port, err = strconv.Atoi(p); err != nil {
			return SecretValue{}, errors.New("dbauth: secret field \"port\" is not a number")
		}
	default:
		return SecretValue{}, errors.New("dbauth: secret field \"port\" is not a number")
	}
	if v.Username == "" || v.Password == "" {
		return SecretValue{}, errors.New("dbauth: secret lacks \"username\" or \"password\"")
	}
	if v.Port < 0 || v.Port > 65535 {
		return SecretValue{}, errors.New("dbauth: secret field \"port\" is out of range")
	}
	return v, nil
}

// Secret takes the login from an AWS Secrets Manager secret. It fetches the
// secret when the first connection opens, caches it, and fetches it again
// when the database refused the cached password (Invalidate), at most once
// per refused password however many connections saw it refused.
type Secret struct {
	// AWS holds region and credentials. Required unless API is set.
	AWS aws.Config
	// API is the Secrets Manager client. Nil:
	// secretsmanager.NewFromConfig(AWS).
	API SecretsAPI
	// SecretID is the secret's name or ARN. Required.
	SecretID string
	// Logger receives debug records (fetches, with the secret's version id,
	// never its value). Nil: no logging.
	Logger *slog.Logger

	once sync.Once
	api  SecretsAPI

	mu      sync.Mutex
	val     *SecretValue
	version string
	fetches int
}

var _ dialer.Refreshable = (*Secret)(nil)

// Value returns the secret, fetching it unless cached.
func (s *Secret) Value(ctx context.Context) (SecretValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.val != nil {
		return *s.val, nil
	}
	if s.SecretID == "" {
		return SecretValue{}, fmt.Errorf("%w: Secret.SecretID is empty", ErrInvalidConfig)
	}
	s.once.Do(func() {
		s.api = s.API
		if s.api == nil && (s.AWS.Region != "" || s.AWS.BaseEndpoint != nil) {
			s.api = secretsmanager.NewFromConfig(s.AWS)
		}
	})
	if s.api == nil {
		return SecretValue{}, fmt.Errorf("%w: set Secret.AWS (region and credentials) or Secret.API", ErrInvalidConfig)
	}
	start := time.Now()
	out, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.SecretID)})
	if err != nil {
		return SecretValue{}, fmt.Errorf("dbauth: GetSecretValue %s: %w", s.SecretID, err)
	}
	if out.SecretString == nil {
		return SecretValue{}, fmt.Errorf("dbauth: secret %s has no SecretString (binary secrets are not supported)", s.SecretID)
	}
	v, err := ParseSecret(*out.SecretString)
	if err != nil {
		return SecretValue{}, fmt.Errorf("%w (secret %s)", err, s.SecretID)
	}
	s.val, s.version = &v, aws.ToString(out.VersionId)
	s.fetches++
	if s.Logger != nil {
		s.Logger.Debug("dbauth: secret fetched", "secret", s.SecretID, "version", s.version, "took", time.Since(start))
	}
	return v, nil
}

// Fetches returns how many times the secret was fetched.
func (s *Secret) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// Login returns the secret's username and password (the DSN's user is
// ignored: the secret names its user).
func (s *Secret) Login(ctx context.Context, addr, user string) (dialer.Login, error) {
	v, err := s.Value(ctx)
	if err != nil {
		return dialer.Login{}, err
	}
	return dialer.Login{User: v.Username, Password: v.Password}, nil
}

// Invalidate drops the cached secret if it still holds the refused
// password, so that the next Login fetches it again; it reports whether a
// retry may succeed (false when the refused password was not from this
// secret).
func (s *Secret) Invalidate(failed dialer.Login) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.val == nil {
		return true // already dropped by a concurrent connection
	}
	if s.val.Password != failed.Password || s.val.Username != failed.User {
		return true // a newer value is cached already: retry with it
	}
	if s.Logger != nil {
		s.Logger.Debug("dbauth: database refused the secret's password; fetching it again", "secret", s.SecretID, "version", s.version)
	}
	s.val = nil
	return true
}
