package ssmtest

import (
	"fmt"

	"github.com/google/uuid"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Ping statuses DescribeInstanceInformation reports.
const (
	PingOnline         = "Online"
	PingConnectionLost = "ConnectionLost"
	PingInactive       = "Inactive"
)

// Instance describes a managed instance for DescribeInstanceInformation
// (Config.Instances, SetInstance).
type Instance struct {
	// Tags are the instance's tags, matched by "tag:Key" filters.
	// nil: no tags.
	Tags map[string]string
	// PingStatus is the agent's status: PingOnline, PingConnectionLost or
	// PingInactive. StartSession for an instance that is not Online is
	// answered TargetNotConnected, as AWS does. "": PingOnline.
	PingStatus string
	// LastPingTime is when the agent last reached the service. Zero: the
	// time of the DescribeInstanceInformation call for an Online agent, the
	// time the instance was configured otherwise.
	LastPingTime time.Time
	// ComputerName is the host name the agent reports. "": "ip-127-0-0-1".
	ComputerName string
	// Stopped marks a stopped EC2 instance: its agent is reported
	// ConnectionLost (whatever PingStatus says) until the
	// AWS-StartEC2Instance runbook starts it; Config.StartDelay later the
	// agent is Online. A non-Online instance that is not Stopped (agent
	// broken) stays as it is when started.
	Stopped bool
}

func (in Instance) withDefaults() Instance {
	if in.Stopped {
		in.PingStatus = PingConnectionLost
	}
	if in.PingStatus == "" {
		in.PingStatus = PingOnline
	}
	if in.LastPingTime.IsZero() && in.PingStatus != PingOnline {
		in.LastPingTime = time.Now()
	}
	if in.ComputerName == "" {
		in.ComputerName = "ip-127-0-0-1"
	}
	tags := make(map[string]string, len(in.Tags))
	for k, v := range in.Tags {
		tags[k] = v
	}
	in.Tags = tags
	return in
}

// SetInstance adds or replaces what DescribeInstanceInformation reports for
// instance id (see Config.Instances). It does not change Targets: an
// instance can be listed without a target address (its sessions fail) and
// vice versa.
func (s *Server) SetInstance(id string, in Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[id] = in.withDefaults()
}

type describeFilter struct {
	Key    *string  `json:"Key"`
	Values []string `json:"Values"`
}

type describeInput struct {
	Filters                       []describeFilter `json:"Filters"`
	InstanceInformationFilterList []describeFilter `json:"InstanceInformationFilterList"`
	MaxResults                    *int             `json:"MaxResults"`
	NextToken                     *string          `json:"NextToken"`
}

type instanceInformation struct {
	InstanceID       string  `json:"InstanceId"`
	PingStatus       string  `json:"PingStatus"`
	LastPingDateTime float64 `json:"LastPingDateTime"`
	AgentVersion     string  `json:"AgentVersion"`
	IsLatestVersion  bool    `json:"IsLatestVersion"`
	PlatformType     string  `json:"PlatformType"`
	PlatformName     string  `json:"PlatformName"`
	ResourceType     string  `json:"ResourceType"`
	ComputerName     string  `json:"ComputerName"`
	IPAddress        string  `json:"IPAddress"`
}

// apiDescribeInstanceInformation lists the instances of Config.Instances
// (and, as Online without tags, those of Config.Targets not listed there),
// filtered by "tag:Key", "tag-key", "InstanceIds", "PingStatus" and
// "ResourceType" string filters, in pages of MaxResults (5-50, default 10).
func (s *Server) apiDescribeInstanceInformation(body []byte) (any, *apiError) {
	var in describeInput
	if e := decodeInput(body, &in); e != nil {
		return nil, e
	}
	if len(in.InstanceInformationFilterList) > 0 && len(in.Filters) > 0 {
		return nil, &apiError{status: 400, code: "InvalidFilter", message: "InstanceInformationFilterList and Filters cannot be used together."}
	}
	if len(in.InstanceInformationFilterList) > 0 {
		return nil, &apiError{status: 400, code: "InvalidFilter", message: "ssmtest emulates the Filters parameter only"}
	}
	max := 10
	if in.MaxResults != nil {
		max = *in.MaxResults
		if max < 5 || max > 50 {
			return nil, errValidation(fmt.Sprintf("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50 and greater than or equal to 5", max))
		}
	}
	for _, f := range in.Filters {
		if f.Key == nil || *f.Key == "" {
			return nil, errValidation("1 validation error detected: Value null at 'filters.1.member.key' failed to satisfy constraint: Member must not be null")
		}
		if len(f.Values) == 0 {
			return nil, errValidation("1 validation error detected: Value '[]' at 'filters.1.member.values' failed to satisfy constraint: Member must have length greater than or equal to 1")
		}
		k := *f.Key
		if !strings.HasPrefix(k, "tag:") && k != "tag-key" && k != "InstanceIds" && k != "PingStatus" && k != "ResourceType" {
			return nil, &apiError{status: 400, code: "InvalidInstanceInformationFilterValue", message: fmt.Sprintf("ssmtest: filter key %s is not emulated", k)}
		}
	}
	now := time.Now()
	s.mu.Lock()
	ids := make(map[string]Instance, len(s.instances)+len(s.cfg.Targets))
	for id := range s.cfg.Targets {
		ids[id] = Instance{}.withDefaults()
	}
	for id, inst := range s.instances {
		ids[id] = inst
	}
	s.mu.Unlock()
	var list []instanceInformation
	for id, inst := range ids {
		if !matchFilters(id, inst, in.Filters) {
			continue
		}
		ping := inst.LastPingTime
		if ping.IsZero() {
			ping = now
		}
		rt := "EC2Instance"
		if strings.HasPrefix(id, "mi-") {
			rt = "ManagedInstance"
		}
		list = append(list, instanceInformation{
			InstanceID: id, PingStatus: inst.PingStatus,
			LastPingDateTime: float64(ping.UnixMilli()) / 1000,
			AgentVersion:     s.cfg.AgentVersion, IsLatestVersion: true,
			PlatformType: "Linux", PlatformName: "Amazon Linux", ResourceType: rt,
			ComputerName: inst.ComputerName, IPAddress: "127.0.0.1",
		})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].InstanceID < list[j].InstanceID })
	start := 0
	if in.NextToken != nil {
		n, err := strconv.Atoi(*in.NextToken)
		if err != nil || n < 0 || n > len(list) {
			return nil, &apiError{status: 400, code: "InvalidNextToken", message: "The specified token is not valid."}
		}
		start = n
	}
	end := min(start+max, len(list))
	out := struct {
		InstanceInformationList []instanceInformation `json:"InstanceInformationList"`
		NextToken               *string               `json:"NextToken,omitempty"`
	}{InstanceInformationList: list[start:end]}
	if end < len(list) {
		t := strconv.Itoa(end)
		out.NextToken = &t
	}
	if out.InstanceInformationList == nil {
		out.InstanceInformationList = []instanceInformation{}
	}
	return out, nil
}

func matchFilters(id string, inst Instance, filters []describeFilter) bool {
	for _, f := range filters {
		k := *f.Key
		var have []string
		switch {
		case strings.HasPrefix(k, "tag:"):
			v, ok := inst.Tags[strings.TrimPrefix(k, "tag:")]
			if !ok {
				return false
			}
			have = []string{v}
		case k == "tag-key":
			for tk := range inst.Tags {
				have = append(have, tk)
			}
		case k == "InstanceIds":
			have = []string{id}
		case k == "PingStatus":
			have = []string{inst.PingStatus}
		case k == "ResourceType":
			if strings.HasPrefix(id, "mi-") {
				have = []string{"ManagedInstance"}
			} else {
				have = []string{"EC2Instance"}
			}
		}
		if !anyEqual(have, f.Values) {
			return false
		}
	}
	return true
}

func anyEqual(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// APIFault makes the emulator answer calls of one operation with an AWS
// error instead of serving them (see SetAPIFault), e.g. to model IAM
// denial ("AccessDeniedException") or throttling ("ThrottlingException").
type APIFault struct {
	// Operation is the operation name, e.g. "SendSSHPublicKey",
	// "GetSecretValue", "DescribeInstanceInformation".
	Operation string
	// Status is the HTTP status. 0: 400.
	Status int
	// Code is the error code (__type), e.g. "AccessDeniedException".
	Code string
	// Message is the error message. "": a generic one naming the code.
	Message string
	// Count is how many calls fail before the operation is served again.
	// 0: every call, until SetAPIFault is called with another fault or
	// ClearAPIFault.
	Count int
}

// SetAPIFault installs f for f.Operation, replacing any fault set for it.
func (s *Server) SetAPIFault(f APIFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Status == 0 {
		f.Status = 400
	}
	if f.Message == "" {
		f.Message = "ssmtest: injected " + f.Code
	}
	if f.Count == 0 {
		f.Count = -1
	}
	s.apiFaults[f.Operation] = &f
}

// ClearAPIFault removes the fault set for operation.
func (s *Server) ClearAPIFault(operation string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.apiFaults, operation)
}

// takeAPIFault returns the error to answer for op, consuming one count.
func (s *Server) takeAPIFault(op string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.apiFaults[op]
	if f == nil {
		return nil
	}
	if f.Count > 0 {
		f.Count--
		if f.Count == 0 {
			delete(s.apiFaults, op)
		}
	}
	return &apiError{status: f.Status, code: f.Code, message: f.Message}
}

type startAutomationInput struct {
	DocumentName *string             `json:"DocumentName"`
	Parameters   map[string][]string `json:"Parameters"`
}

// apiStartAutomationExecution runs the AWS-StartEC2Instance runbook: every
// listed Stopped instance comes Online Config.StartDelay later. Other
// runbooks are not emulated.
func (s *Server) apiStartAutomationExecution(body []byte) (any, *apiError) {
	var in startAutomationInput
	if e := decodeInput(body, &in); e != nil {
		return nil, e
	}
	if in.DocumentName == nil || *in.DocumentName == "" {
		return nil, errValidation("1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null")
	}
	if *in.DocumentName != "AWS-StartEC2Instance" {
		return nil, &apiError{status: 400, code: "InvalidAutomationExecutionParametersException", message: "ssmtest emulates the AWS-StartEC2Instance runbook only"}
	}
	ids := in.Parameters["InstanceId"]
	if len(ids) == 0 {
		return nil, &apiError{status: 400, code: "InvalidAutomationExecutionParametersException", message: "The following parameters are required: InstanceId"}
	}
	delay := s.cfg.StartDelay
	s.mu.Lock()
	var starting []string
	for _, id := range ids {
		if inst, ok := s.instances[id]; ok && inst.Stopped {
			starting = append(starting, id)
		}
	}
	s.mu.Unlock()
	for _, id := range starting {
		s.st.instancesStarted.Add(1)
		s.goTracked(func() {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			s.mu.Lock()
			inst := s.instances[id]
			inst.Stopped, inst.PingStatus, inst.LastPingTime = false, PingOnline, time.Time{}
			s.instances[id] = inst
			s.mu.Unlock()
			s.log.Info("ssmtest: instance started", "instance", id)
		})
	}
	return struct {
		AutomationExecutionID string `json:"AutomationExecutionId"`
	}{uuid.NewString()}, nil
}
