package ssmtest

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

type getSecretValueInput struct {
	SecretID     *string `json:"SecretId"`
	VersionID    *string `json:"VersionId"`
	VersionStage *string `json:"VersionStage"`
}

type secretValue struct {
	value   string
	version string
	created time.Time
	fetches int
}

// SetSecret sets (or rotates) the SecretString of secret name: the next
// GetSecretValue returns value under a new VersionId.
func (s *Server) SetSecret(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.secrets[name]
	if sv == nil {
		sv = &secretValue{}
		s.secrets[name] = sv
	}
	sv.value, sv.version, sv.created = value, uuid.NewString(), time.Now()
}

// SecretFetches returns how many GetSecretValue calls were answered for
// secret name (failed calls are not counted).
func (s *Server) SecretFetches(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.secrets[name]; sv != nil {
		return sv.fetches
	}
	return 0
}

// SecretARN returns the ARN the emulator gives secret name.
func (s *Server) SecretARN(name string) string {
	return fmt.Sprintf("arn:aws:secretsmanager:%s:123456789012:secret:%s-AbCdEf", s.cfg.Region, name)
}

// serveSecretsManager answers Secrets Manager's GetSecretValue.
func (s *Server) serveSecretsManager(op string, body []byte) (any, *apiError) {
	if op != "GetSecretValue" {
		return nil, errUnknownOperation()
	}
	var in getSecretValueInput
	if e := decodeInput(body, &in); e != nil {
		return nil, e
	}
	if in.SecretID == nil || *in.SecretID == "" {
		return nil, errValidation("1 validation error detected: Value null at 'secretId' failed to satisfy constraint: Member must not be null")
	}
	if in.VersionStage != nil && *in.VersionStage != "AWSCURRENT" {
		return nil, &apiError{status: 400, code: "ResourceNotFoundException", message: "Secrets Manager can't find the specified secret value for staging label: " + *in.VersionStage}
	}
	name := *in.SecretID
	if strings.HasPrefix(name, "arn:") {
		for n := range s.secretNames() {
			if s.SecretARN(n) == name {
				name = n
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.secrets[name]
	if sv == nil {
		return nil, &apiError{status: 400, code: "ResourceNotFoundException", message: "Secrets Manager can't find the specified secret."}
	}
	if in.VersionID != nil && *in.VersionID != sv.version {
		return nil, &apiError{status: 400, code: "ResourceNotFoundException", message: "Secrets Manager can't find the specified secret value for VersionId: " + *in.VersionID}
	}
	sv.fetches++
	s.st.secretFetches.Add(1)
	return struct {
		ARN           string   `json:"ARN"`
		Name          string   `json:"Name"`
		VersionID     string   `json:"VersionId"`
		SecretString  string   `json:"SecretString"`
		VersionStages []string `json:"VersionStages"`
		CreatedDate   float64  `json:"CreatedDate"`
	}{s.SecretARN(name), name, sv.version, sv.value, []string{"AWSCURRENT"}, float64(sv.created.UnixMilli()) / 1000}, nil
}

func (s *Server) secretNames() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]bool, len(s.secrets))
	for n := range s.secrets {
		m[n] = true
	}
	return m
}
