package ssmtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Names of the session documents the emulator serves.
const (
	DocStartSSHSession                 = "AWS-StartSSHSession"
	DocStartPortForwardingSession      = "AWS-StartPortForwardingSession"
	DocStartPortForwardingToRemoteHost = "AWS-StartPortForwardingSessionToRemoteHost"
)

const (
	maxAPIBody                           = 1 << 20
	sigV4Algorithm                       = "AWS4-HMAC-SHA256"
	sigV4MaxSkew                         = 15 * time.Minute
	errorTypeSuffixCoral                 = ":http://internal.amazon.com/coral/com.amazon.coral.service/"
	errorTypeSuffixSSM                   = ":http://internal.amazon.com/coral/com.amazonaws.ssm/"
	messageInvalidSignature              = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	messageUnrecognizedClient            = "The security token included in the request is invalid."
	messageMissingAuthenticationToken    = "Missing Authentication Token"
	messageAuthorizationHeaderIncomplete = "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters."
)

// apiError is an AWS JSON 1.1 error answer.
type apiError struct {
	status  int
	code    string
	message string
	coral   bool // authentication errors come from the coral framework, not the service model
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errValidation(msg string) *apiError {
	return &apiError{status: 400, code: "ValidationException", message: msg}
}

// serveAPI handles POST / with X-Amz-Target AmazonSSM.<Operation>.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.st.apiRequests.Add(1)
	if r.URL.Path != "/" || r.Method != http.MethodPost {
		s.writeAPIError(w, &apiError{status: 404, code: "UnknownOperationException", message: "", coral: true})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil || len(body) > maxAPIBody {
		s.writeAPIError(w, &apiError{status: 413, code: "SerializationException", message: "request body too large or unreadable", coral: true})
		return
	}
	target := r.Header.Get("X-Amz-Target")
	svc, op := apiServiceOf(target)
	signingName := "ssm"
	if svc != nil {
		signingName = svc.signingName
	}
	if aerr := s.verifySigV4(r, body, signingName); aerr != nil {
		s.log.Info("ssmtest: API request refused", "target", target, "error", aerr.code)
		s.writeAPIError(w, aerr)
		return
	}
	if svc == nil {
		s.writeAPIError(w, &apiError{status: 400, code: "UnknownOperationException", message: "", coral: true})
		return
	}
	var out any
	var aerr *apiError
	if fault := s.takeAPIFault(op); fault != nil {
		aerr = fault
	} else {
		out, aerr = svc.serve(s, op, body)
	}
	if aerr != nil {
		s.log.Info("ssmtest: API error", "operation", op, "code", aerr.code, "message", aerr.message)
		s.writeAPIError(w, aerr)
		return
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", uuid.NewString())
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// apiService is one AWS JSON 1.1 service the emulator answers on its API
// endpoint, told apart by the X-Amz-Target prefix.
type apiService struct {
	targetPrefix string // e.g. "AmazonSSM."
	signingName  string // SigV4 service name, e.g. "ssm"
	serve        func(s *Server, op string, body []byte) (any, *apiError)
}

var apiServices = []*apiService{
	{"AmazonSSM.", "ssm", (*Server).serveSSM},
	{"AWSEC2InstanceConnectService.", "ec2-instance-connect", (*Server).serveInstanceConnect},
	{"secretsmanager.", "secretsmanager", (*Server).serveSecretsManager},
}

// apiServiceOf returns the service and operation an X-Amz-Target names, or
// nil for an unknown service.
func apiServiceOf(target string) (*apiService, string) {
	for _, svc := range apiServices {
		if op, ok := strings.CutPrefix(target, svc.targetPrefix); ok {
			return svc, op
		}
	}
	return nil, ""
}

func errUnknownOperation() *apiError {
	return &apiError{status: 400, code: "UnknownOperationException", message: "", coral: true}
}

// serveSSM answers the SSM operations the emulator implements.
func (s *Server) serveSSM(op string, body []byte) (any, *apiError) {
	switch op {
	case "StartSession":
		return s.apiStartSession(body)
	case "ResumeSession":
		return s.apiResumeSession(body)
	case "TerminateSession":
		return s.apiTerminateSession(body)
	case "DescribeInstanceInformation":
		return s.apiDescribeInstanceInformation(body)
	case "StartAutomationExecution":
		return s.apiStartAutomationExecution(body)
	}
	return nil, errUnknownOperation()
}

func (s *Server) writeAPIError(w http.ResponseWriter, e *apiError) {
	s.st.apiErrors.Add(1)
	suffix := errorTypeSuffixSSM
	if e.coral {
		suffix = errorTypeSuffixCoral
	}
	body := struct {
		Type    string `json:"__type"`
		Message string `json:"message,omitempty"`
	}{e.code, e.message}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", uuid.NewString())
	w.Header().Set("x-amzn-ErrorType", e.code+suffix)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// verifySigV4 recomputes the AWS Signature Version 4 of r over the headers
// the client listed in SignedHeaders and compares it with the one it sent.
func (s *Server) verifySigV4(r *http.Request, body []byte, signingName string) *apiError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &apiError{status: 400, code: "MissingAuthenticationTokenException", message: messageMissingAuthenticationToken, coral: true}
	}
	rest, ok := strings.CutPrefix(auth, sigV4Algorithm+" ")
	if !ok {
		return &apiError{status: 400, code: "IncompleteSignatureException", message: "Unsupported authorization type", coral: true}
	}
	var cred, signed, sig string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			sig = v
		}
	}
	if cred == "" || signed == "" || sig == "" {
		return &apiError{status: 400, code: "IncompleteSignatureException", message: messageAuthorizationHeaderIncomplete, coral: true}
	}
	// Credential = AKID/yyyymmdd/region/service/aws4_request
	cp := strings.Split(cred, "/")
	if len(cp) != 5 || cp[4] != "aws4_request" {
		return &apiError{status: 400, code: "IncompleteSignatureException", message: "Credential should be scoped to a valid region. ", coral: true}
	}
	akid, day, region, service := cp[0], cp[1], cp[2], cp[3]
	if subtle.ConstantTimeCompare([]byte(akid), []byte(s.cfg.AccessKeyID)) != 1 {
		return &apiError{status: 400, code: "UnrecognizedClientException", message: messageUnrecognizedClient, coral: true}
	}
	tok := r.Header.Get("X-Amz-Security-Token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.SessionToken)) != 1 {
		return &apiError{status: 400, code: "UnrecognizedClientException", message: messageUnrecognizedClient, coral: true}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return &apiError{status: 400, code: "IncompleteSignatureException", message: "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.", coral: true}
	}
	if day != amzDate[:8] {
		return &apiError{status: 400, code: "InvalidSignatureException", message: fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", day, amzDate[:8], amzDate), coral: true}
	}
	if region != s.cfg.Region {
		return &apiError{status: 400, code: "InvalidSignatureException", message: fmt.Sprintf("Credential should be scoped to a valid region. Credential should be scoped to correct region: '%s'.", s.cfg.Region), coral: true}
	}
	if service != signingName {
		return &apiError{status: 400, code: "InvalidSignatureException", message: "Credential should be scoped to correct service: '" + signingName + "'. ", coral: true}
	}
	now := time.Now().UTC()
	if skew := now.Sub(t); skew > sigV4MaxSkew || skew < -sigV4MaxSkew {
		return &apiError{status: 400, code: "InvalidSignatureException", message: fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 15 min.)", amzDate, now.Add(-sigV4MaxSkew).Format("20060102T150405Z"), now.Format("20060102T150405Z")), coral: true}
	}
	names := strings.Split(signed, ";")
	hasHost := false
	var ch strings.Builder
	for _, n := range names {
		if n != strings.ToLower(n) {
			return &apiError{status: 400, code: "InvalidSignatureException", message: messageInvalidSignature, coral: true}
		}
		var vals []string
		switch n {
		case "host":
			hasHost = true
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			vals = r.Header.Values(n)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		ch.WriteString(n)
		ch.WriteByte(':')
		ch.WriteString(strings.Join(vals, ","))
		ch.WriteByte('\n')
	}
	if !hasHost {
		return &apiError{status: 400, code: "InvalidSignatureException", message: "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", coral: true}
	}
	bodyHash := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(bodyHash[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != "UNSIGNED-PAYLOAD" && h != payloadHash {
		return &apiError{status: 400, code: "InvalidSignatureException", message: "The provided 'x-amz-content-sha256' header does not match what was computed.", coral: true}
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonical := strings.Join([]string{
		r.Method,
		path,
		canonicalQuery(r.URL.Query()),
		ch.String(),
		signed,
		payloadHash,
	}, "\n")
	if !hmac.Equal([]byte(s.signV4(canonical, amzDate, day, region, service)), []byte(sig)) {
		return &apiError{status: 400, code: "InvalidSignatureException", message: messageInvalidSignature, coral: true}
	}
	return nil
}

// signV4 returns the hex SigV4 signature of a canonical request with the
// server's secret key.
func (s *Server) signV4(canonical, amzDate, day, region, service string) string {
	crHash := sha256.Sum256([]byte(canonical))
	scope := day + "/" + region + "/" + service + "/aws4_request"
	sts := sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crHash[:])
	key := hmacSHA256([]byte("AWS4"+s.cfg.SecretAccessKey), day)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, "aws4_request")
	return hex.EncodeToString(hmacSHA256(key, sts))
}

func canonicalQuery(q map[string][]string) string {
	if len(q) == 0 {
		return ""
	}
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, awsURIEncode(k)+"="+awsURIEncode(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

func awsURIEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

type startSessionInput struct {
	Target       *string             `json:"Target"`
	DocumentName *string             `json:"DocumentName"`
	Parameters   map[string][]string `json:"Parameters"`
	Reason       *string             `json:"Reason"`
}

type sessionOutput struct {
	SessionID  *string `json:"SessionId,omitempty"`
	TokenValue *string `json:"TokenValue,omitempty"`
	StreamURL  *string `json:"StreamUrl,omitempty"`
}

type sessionIDInput struct {
	SessionID *string `json:"SessionId"`
}

func decodeInput(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{status: 400, code: "SerializationException", message: "Start of structure or map found where not expected.", coral: true}
	}
	return nil
}

func (s *Server) apiStartSession(body []byte) (any, *apiError) {
	var in startSessionInput
	if e := decodeInput(body, &in); e != nil {
		return nil, e
	}
	if in.Target == nil {
		return nil, errValidation("1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null")
	}
	if *in.Target == "" || len(*in.Target) > 400 {
		return nil, errValidation(fmt.Sprintf("1 validation error detected: Value '%s' at 'target' failed to satisfy constraint: Member must have length between 1 and 400", *in.Target))
	}
	if in.Reason != nil && (len(*in.Reason) < 1 || len(*in.Reason) > 256) {
		return nil, errValidation("1 validation error detected: Value at 'reason' failed to satisfy constraint: Member must have length between 1 and 256")
	}
	doc := ""
	if in.DocumentName != nil {
		doc = *in.DocumentName
	}
	props, perr := documentProperties(doc, in.Parameters)
	if perr != nil {
		return nil, perr
	}
	real := s.mgs.agent(*in.Target) // a real agent attached through MGS (mgs.go) wins
	s.mu.Lock()
	addr, ok := s.cfg.Targets[*in.Target]
	if inst, known := s.instances[*in.Target]; known && inst.PingStatus != PingOnline {
		ok = false // the agent is not connected: AWS answers TargetNotConnected
	}
	s.mu.Unlock()
	if !ok && real == nil {
		return nil, &apiError{status: 400, code: "TargetNotConnected", message: *in.Target + " is not connected."}
	}
	ss, err := s.newSession(*in.Target, doc, props, addr, real)
	if err != nil {
		return nil, &apiError{status: 500, code: "InternalServerError", message: err.Error()}
	}
	id, tok, u := ss.id, ss.currentToken(), ss.streamURL()
	return sessionOutput{SessionID: &id, TokenValue: &tok, StreamURL: &u}, nil
}

func (s *Server) sessionFromInput(body []byte) (*session, string, *apiError) {
	var in sessionIDInput
	if e := decodeInput(body, &in); e != nil {
		return nil, "", e
	}
	if in.SessionID == nil {
		return nil, "", errValidation("1 validation error detected: Value null at 'sessionId' failed to satisfy constraint: Member must not be null")
	}
	id := *in.SessionID
	ss := s.session(id)
	if ss == nil && s.recentlyEnded(id) {
		return nil, id, nil // forgotten, but known to have ended
	}
	if ss == nil {
		return nil, id, &apiError{status: 400, code: "DoesNotExistException", message: fmt.Sprintf("Session with id %s does not exist.", id)}
	}
	return ss, id, nil
}

func (s *Server) apiResumeSession(body []byte) (any, *apiError) {
	ss, id, e := s.sessionFromInput(body)
	if e != nil {
		return nil, e
	}
	tok, ok := "", false
	if ss != nil {
		tok, ok = ss.newToken()
	}
	if !ok {
		// Terminated or timed out: the plugin treats a nil TokenValue as
		// "Session: ... timed out." (reference §2.3).
		return sessionOutput{SessionID: &id}, nil
	}
	s.st.resumes.Add(1)
	u := ss.streamURL()
	return sessionOutput{SessionID: &id, TokenValue: &tok, StreamURL: &u}, nil
}

func (s *Server) apiTerminateSession(body []byte) (any, *apiError) {
	ss, id, e := s.sessionFromInput(body)
	if e != nil {
		return nil, e
	}
	if ss != nil {
		ss.finish(endTerminateAPI, "", false)
	}
	return sessionOutput{SessionID: &id}, nil
}

// documentProperties returns the session properties the document produces
// for the parameters (what reaches the agent and, through the handshake, the
// client; reference §2.2). Parameter values are lists of strings; the first
// element is used.
func documentProperties(doc string, params map[string][]string) (map[string]string, *apiError) {
	get := func(name, def string) string {
		if v := params[name]; len(v) > 0 {
			return v[0]
		}
		return def
	}
	var props map[string]string
	var allowed []string
	switch doc {
	case DocStartSSHSession:
		props = map[string]string{"portNumber": get("portNumber", "22")}
		allowed = []string{"portNumber"}
	case DocStartPortForwardingSession:
		props = map[string]string{
			"portNumber": get("portNumber", "80"), "localPortNumber": get("localPortNumber", "0"),
			"type": "LocalPortForwarding",
		}
		allowed = []string{"portNumber", "localPortNumber"}
	case DocStartPortForwardingToRemoteHost:
		props = map[string]string{
			"host": get("host", ""), "portNumber": get("portNumber", "80"),
			"localPortNumber": get("localPortNumber", "0"), "type": "LocalPortForwarding",
		}
		allowed = []string{"host", "portNumber", "localPortNumber"}
	case "":
		return nil, &apiError{status: 400, code: "InvalidDocument", message: "ssmtest emulates port sessions only: set DocumentName (e.g. AWS-StartSSHSession); shell sessions are not emulated"}
	default:
		return nil, &apiError{status: 400, code: "InvalidDocument", message: fmt.Sprintf("Document with name %s does not exist.", doc)}
	}
	for k, v := range params {
		if !contains(allowed, k) {
			return nil, &apiError{status: 400, code: "InvalidParameters", message: fmt.Sprintf("document %s does not support parameter %s.", doc, k)}
		}
		if len(v) != 1 {
			return nil, &apiError{status: 400, code: "InvalidParameters", message: fmt.Sprintf("Parameter \"%s\" has %d values; it takes exactly one.", k, len(v))}
		}
	}
	if p := props["portNumber"]; p == "" {
		return nil, &apiError{status: 400, code: "InvalidParameters", message: "Parameter \"portNumber\" is empty."}
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return nil, &apiError{status: 400, code: "InvalidParameters", message: fmt.Sprintf("Parameter \"portNumber\" %q does not match the allowed pattern.", p)}
	}
	return props, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newToken() string {
	b := make([]byte, 96)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}
