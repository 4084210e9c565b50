package aliyuntest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// apiError is an error answer in Alibaba's shape.
type apiError struct {
	status        int
	code, message string
}

func (s *Server) writeError(w http.ResponseWriter, reqID string, e apiError) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{
		"RequestId": reqID,
		"HostId":    "ecs." + s.cfg.Region + ".aliyuncs.com",
		"Code":      e.code,
		"Message":   e.message,
		"Recommend": "https://api.aliyun.com/troubleshoot?q=" + e.code + "&product=Ecs",
	})
}

func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func requestID() string {
	h := strings.ToUpper(randHex(16))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// serveAPI is the ECS OpenAPI (RPC style: POST / with the parameters in
// the query string or a form body).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	reqID := requestID()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.writeError(w, reqID, apiError{400, "InvalidParameter", "unreadable body"})
		return
	}
	params := url.Values{}
	for k, v := range r.URL.Query() {
		params[k] = v
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(body))
		if err == nil {
			for k, v := range form {
				params[k] = v
			}
		}
	}
	action := r.Header.Get("x-acs-action")
	if action == "" {
		action = params.Get("Action")
	}
	s.mu.Lock()
	s.calls[action]++
	s.mu.Unlock()
	if e := s.verify(r, body, params); e != nil {
		s.stats.sigFail.Add(1)
		s.writeError(w, reqID, *e)
		return
	}
	if v := r.Header.Get("x-acs-version"); v == "" && params.Get("Version") != "2014-05-26" || v != "" && v != "2014-05-26" {
		s.writeError(w, reqID, apiError{400, "InvalidVersion", "Specified parameter Version is not valid."})
		return
	}
	if rg := params.Get("RegionId"); rg != s.cfg.Region {
		if rg == "" {
			s.writeError(w, reqID, apiError{400, "MissingRegionId", "RegionId is mandatory for this action."})
		} else {
			s.writeError(w, reqID, apiError{404, "InvalidRegionId.NotFound", "The specified RegionId does not exist."})
		}
		return
	}
	var out any
	var e *apiError
	switch action {
	case "StartTerminalSession":
		out, e = s.startSession(r, params)
	case "EndTerminalSession":
		out, e = s.endSession(params)
	case "DescribeTerminalSessions":
		out, e = s.describeSessions(params)
	case "RunCommand", "InvokeCommand", "DescribeInvocationResults":
		out, e = s.commandAction(action, params)
	default:
		e = &apiError{404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."}
	}
	if d := time.Duration(s.apiDelay.Load()); d > 0 {
		time.Sleep(d)
	}
	if e != nil {
		s.writeError(w, reqID, *e)
		return
	}
	m := out.(map[string]any)
	m["RequestId"] = reqID
	s.writeJSON(w, m)
}

// percentEncode is Alibaba's RFC 3986 encoding.
func percentEncode(v string) string {
	e := url.QueryEscape(v)
	e = strings.ReplaceAll(e, "+", "%20")
	e = strings.ReplaceAll(e, "*", "%2A")
	return strings.ReplaceAll(e, "%7E", "~")
}

// verify checks the request signature: ACS3-HMAC-SHA256 in the
// Authorization header (current SDKs) or the HMAC-SHA1 Signature query
// parameter (older SDKs and ali-instance-cli).
func (s *Server) verify(r *http.Request, body []byte, params url.Values) *apiError {
	auth := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(auth, "ACS3-HMAC-SHA256 "):
		return s.verifyV3(r, body, auth)
	case params.Get("Signature") != "":
		return s.verifyV1(r, params)
	}
	return &apiError{400, "MissingSignature", "The input parameter Signature that is mandatory for processing this request is not supplied."}
}

func (s *Server) verifyV3(r *http.Request, body []byte, auth string) *apiError {
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(auth, "ACS3-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	if fields["Credential"] != s.cfg.AccessKeyID {
		return &apiError{404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."}
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !contains(signed, "host") || !contains(signed, "x-acs-date") || !contains(signed, "x-acs-signature-nonce") {
		return &apiError{400, "IncompleteSignature", "The request signature does not conform to Aliyun standards."}
	}
	sum := sha256.Sum256(body)
	if r.Header.Get("x-acs-content-sha256") != hex.EncodeToString(sum[:]) {
		return &apiError{400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."}
	}
	if e := checkTime(r.Header.Get("x-acs-date")); e != nil {
		return e
	}
	// Canonical query string: sorted keys, values percent-encoded.
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cq []string
	for _, k := range keys {
		cq = append(cq, k+"="+percentEncode(q.Get(k)))
	}
	var ch strings.Builder
	sorted := append([]string(nil), signed...)
	sort.Strings(sorted)
	for _, h := range sorted {
		v := r.Header.Values(h)
		if h == "host" {
			v = []string{r.Host}
		}
		vals := make([]string, len(v))
		for i := range v {
			vals[i] = strings.TrimSpace(v[i])
		}
		sort.Strings(vals)
		ch.WriteString(h + ":" + strings.Join(vals, ",") + "\n")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon := r.Method + "\n" + path + "\n" + strings.Join(cq, "&") + "\n" + ch.String() + "\n" + strings.Join(sorted, ";") + "\n" + r.Header.Get("x-acs-content-sha256")
	ch256 := sha256.Sum256([]byte(canon))
	sts := "ACS3-HMAC-SHA256\n" + hex.EncodeToString(ch256[:])
	mac := hmac.New(sha256.New, []byte(s.cfg.AccessKeySecret))
	mac.Write([]byte(sts))
	if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(fields["Signature"])) {
		return &apiError{400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."}
	}
	return nil
}

func (s *Server) verifyV1(r *http.Request, params url.Values) *apiError {
	if params.Get("AccessKeyId") != s.cfg.AccessKeyID {
		return &apiError{404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."}
	}
	if params.Get("SignatureMethod") != "HMAC-SHA1" {
		return &apiError{400, "InvalidSignatureMethod", "Specified signature method is not supported."}
	}
	if e := checkTime(params.Get("Timestamp")); e != nil {
		return e
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, percentEncode(k)+"="+percentEncode(params.Get(k)))
	}
	sts := r.Method + "&" + percentEncode("/") + "&" + percentEncode(strings.Join(pairs, "&"))
	mac := hmac.New(sha1.New, []byte(s.cfg.AccessKeySecret+"&"))
	mac.Write([]byte(sts))
	if !hmac.Equal([]byte(base64.StdEncoding.EncodeToString(mac.Sum(nil))), []byte(params.Get("Signature"))) {
		return &apiError{400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."}
	}
	return nil
}

// checkTime refuses a request time more than 15 minutes off.
func checkTime(v string) *apiError {
	t, err := time.Parse("2006-01-02T15:04:05Z", v)
	if err != nil {
		return &apiError{400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."}
	}
	if d := time.Since(t); d > 15*time.Minute || d < -15*time.Minute {
		return &apiError{400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."}
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) startSession(r *http.Request, p url.Values) (any, *apiError) {
	inst := p.Get("InstanceId.1")
	if inst == "" {
		return nil, &apiError{400, "MissingInstanceId", "InstanceId is mandatory for this action."}
	}
	if p.Get("InstanceId.2") != "" {
		return nil, &apiError{400, "InvalidParameter", "The emulator accepts one InstanceId."}
	}
	if _, ok := s.host(inst); !ok {
		return nil, &apiError{404, "InvalidInstance.NotFound", "The specified instance does not exist."}
	}
	port := 0
	if v := p.Get("PortNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return nil, &apiError{400, "InvalidPortNumber.Malformed", "The specified parameter PortNumber is not valid."}
		}
		port = n
	}
	if port == 0 {
		return nil, &apiError{400, "InvalidParameter", "The emulator serves port forwarding only: PortNumber is required."}
	}
	if ct := p.Get("ConnectionType"); ct != "" && ct != "Internet" && ct != "Intranet" {
		return nil, &apiError{400, "InvalidConnectionType", "The specified parameter ConnectionType is not valid."}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &apiError{503, "ServiceUnavailable", "The emulator is closing."}
	}
	open := 0
	for _, ss := range s.sessions {
		if ss.instance == inst && !ss.ended {
			open++
		}
	}
	if open >= s.cfg.SessionLimit {
		// Assumption: no public source (agent, CLI, SDK models, API
		// reference searched) names the code or status of this refusal.
		return nil, &apiError{403, "SessionLimitExceeded", fmt.Sprintf("The instance has reached its limit of %d sessions.", s.cfg.SessionLimit)}
	}
	s.nextID++
	id := fmt.Sprintf("s-emu%011d", s.nextID)
	ss := &session{
		id: id, instance: inst, port: port, target: p.Get("TargetServer"),
		token: randHex(16), chans: map[*channel]struct{}{}, created: time.Now(),
	}
	s.sessions[id] = ss
	s.stats.started.Add(1)
	u := "ws://" + s.Addr() + "/session?sessionId=" + id + "&token=" + ss.token
	return map[string]any{"SessionId": id, "SecurityToken": ss.token, "WebSocketUrl": u}, nil
}

func (s *Server) endSession(p url.Values) (any, *apiError) {
	id := p.Get("SessionId")
	s.mu.Lock()
	ss, ok := s.sessions[id]
	if !ok {
		s.mu.Unlock()
		return nil, &apiError{404, "InvalidSessionId.NotFound", "The specified session does not exist."}
	}
	var chans []*channel
	if !ss.ended {
		ss.ended = true
		s.stats.ended.Add(1)
		for c := range ss.chans {
			chans = append(chans, c)
		}
	}
	s.mu.Unlock()
	for _, c := range chans {
		c.end("Exit")
	}
	return map[string]any{}, nil
}

func (s *Server) describeSessions(p url.Values) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []map[string]any
	for _, ss := range s.sessions {
		if want := p.Get("SessionId"); want != "" && want != ss.id {
			continue
		}
		status := "Connected"
		if ss.ended {
			status = "Terminated"
		} else if len(ss.chans) == 0 {
			status = "Connecting"
		}
		list = append(list, map[string]any{
			"SessionId": ss.id, "InstanceId": ss.instance, "PortNumber": ss.port, "TargetServer": ss.target,
			"Status": status, "ConnectionCount": len(ss.chans),
		})
	}
	return map[string]any{"Sessions": map[string]any{"Session": list}}, nil
}
