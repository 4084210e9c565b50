package ssm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// SelectorPrefix starts a target that names instances by tag instead of by
// id: "tag:Name=etl-bastion" selects the managed instance whose tag Name is
// etl-bastion.
const SelectorPrefix = "tag:"

// Defaults of Config.StartTimeout and Config.StartPollInterval.
const (
	DefaultStartTimeout      = 5 * time.Minute
	DefaultStartPollInterval = 5 * time.Second
)

// Ping statuses of a managed instance's agent, as DescribeInstanceInformation
// reports them.
const (
	PingOnline         = "Online"
	PingConnectionLost = "ConnectionLost"
	PingInactive       = "Inactive"
)

// Errors of target resolution; a [*TargetError] matches one of them.
var (
	// ErrNoTarget: no managed instance matches the selector or id.
	ErrNoTarget = errors.New("ssm: no managed instance matches the target")
	// ErrAmbiguousTarget: several managed instances with an online agent
	// match the selector.
	ErrAmbiguousTarget = errors.New("ssm: several managed instances match the target")
	// ErrTargetOffline: the matching instance's agent is not Online
	// (stopped instance, agent not running, no route to the SSM endpoints).
	ErrTargetOffline = errors.New("ssm: the target's SSM agent is not online")
)

// InstanceAPI is the part of the SSM API target resolution needs.
// *github.com/aws/aws-sdk-go-v2/service/ssm.Client satisfies it; when
// Config.API also implements it, Dial uses it to resolve selectors.
type InstanceAPI interface {
	DescribeInstanceInformation(ctx context.Context, in *ssmsdk.DescribeInstanceInformationInput, optFns ...func(*ssmsdk.Options)) (*ssmsdk.DescribeInstanceInformationOutput, error)
}

var _ InstanceAPI = (*ssmsdk.Client)(nil)

// Instance is a managed instance as DescribeInstanceInformation reports it.
type Instance struct {
	ID           string    // "i-..." or "mi-..."
	PingStatus   string    // PingOnline, PingConnectionLost, PingInactive
	LastPingTime time.Time // when the agent last reached the service; zero if unknown
	ComputerName string    // host name reported by the agent; "" if unknown
	AgentVersion string
	// StartedIn is how long starting the instance and waiting for its
	// agent took (Config.StartStopped); zero if it was not started.
	StartedIn time.Duration
}

func (i Instance) String() string {
	s := i.ID + " (" + i.PingStatus
	if !i.LastPingTime.IsZero() {
		s += ", last ping " + i.LastPingTime.UTC().Format(time.RFC3339)
	}
	if i.ComputerName != "" {
		s += ", " + i.ComputerName
	}
	return s + ")"
}

// TargetError explains why a target could not be used. It matches
// ErrNoTarget, ErrAmbiguousTarget or ErrTargetOffline (errors.Is).
type TargetError struct {
	Target    string     // the selector or instance id as given
	Err       error      // ErrNoTarget, ErrAmbiguousTarget or ErrTargetOffline
	Instances []Instance // the matching instances (all of them, online or not)
	Started   string     // with Config.StartStopped: what was started, when the wait failed; "" otherwise
}

func (e *TargetError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	fmt.Fprintf(&b, " %q", e.Target)
	if len(e.Instances) > 0 {
		b.WriteString(": ")
		for i, in := range e.Instances {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(in.String())
		}
	}
	if e.Started != "" {
		b.WriteString("; ")
		b.WriteString(e.Started)
	}
	switch {
	case errors.Is(e.Err, ErrNoTarget):
		b.WriteString("; check the tag or id, the region, and that the instance runs the SSM agent with an instance profile allowing it to register (AmazonSSMManagedInstanceCore)")
	case errors.Is(e.Err, ErrAmbiguousTarget):
		b.WriteString("; make the selector match one instance (another tag) or pass the instance id")
	case errors.Is(e.Err, ErrTargetOffline):
		b.WriteString("; start the instance (or set StartStopped / --start-stopped), or check its SSM agent and its route to the SSM endpoints")
	}
	return b.String()
}

// Unwrap returns the sentinel (ErrNoTarget, ErrAmbiguousTarget, ErrTargetOffline).
func (e *TargetError) Unwrap() error { return e.Err }

// IsSelector reports whether target is a tag selector ("tag:Key=Value")
// rather than an instance id.
func IsSelector(target string) bool { return strings.HasPrefix(target, SelectorPrefix) }

// ParseSelector splits "tag:Key=Value" into Key and Value.
func ParseSelector(target string) (key, value string, err error) {
	rest, ok := strings.CutPrefix(target, SelectorPrefix)
	if !ok {
		return "", "", &ConfigError{"Target", fmt.Sprintf("%q is not a tag selector: want tag:Key=Value", target)}
	}
	key, value, ok = strings.Cut(rest, "=")
	if !ok || key == "" || value == "" || len(key) > 128 || len(value) > 256 {
		return "", "", &ConfigError{"Target", fmt.Sprintf("%q is not a tag selector: want tag:Key=Value with a non-empty key (≤ 128 characters) and value (≤ 256), e.g. tag:Name=etl-bastion", target)}
	}
	return key, value, nil
}

// maxDescribePages bounds the pages read from DescribeInstanceInformation
// (50 instances each).
const maxDescribePages = 20

// ResolveTarget returns the managed instance Config.Target names, checked to
// have an Online agent: for a tag selector ("tag:Name=etl-bastion") the one
// matching instance whose agent is Online; for an instance id that instance.
// Errors are [*TargetError] (none, several, offline with its last ping
// time), [*ConfigError] for a malformed target or config, or an
// [*APIError] from DescribeInstanceInformation (e.g. IAM denied
// ssm:DescribeInstanceInformation).
func ResolveTarget(ctx context.Context, cfg Config) (Instance, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return Instance{}, err
	}
	api, release := c.API, func() {}
	if api == nil {
		api, release = newAPI(&c)
	}
	defer release()
	return resolveTarget(ctx, api, &c)
}

// StartAPI is the SSM call Config.StartStopped needs.
// *github.com/aws/aws-sdk-go-v2/service/ssm.Client satisfies it.
type StartAPI interface {
	StartAutomationExecution(ctx context.Context, in *ssmsdk.StartAutomationExecutionInput, optFns ...func(*ssmsdk.Options)) (*ssmsdk.StartAutomationExecutionOutput, error)
}

// StartRunbook is the Automation runbook StartStopped runs.
const StartRunbook = "AWS-StartEC2Instance"

// resolveTarget resolves c.Target and, with c.StartStopped, starts a
// stopped one.
func resolveTarget(ctx context.Context, api API, c *Config) (Instance, error) {
	inst, err := describeTarget(ctx, api, c.Target)
	var te *TargetError
	if !c.StartStopped || !errors.As(err, &te) || !errors.Is(te.Err, ErrTargetOffline) || len(te.Instances) != 1 || !strings.HasPrefix(te.Instances[0].ID, "i-") {
		return inst, err
	}
	sa, ok := api.(StartAPI)
	if !ok {
		return Instance{}, &ConfigError{"API", "does not implement StartAutomationExecution (ssm.StartAPI), needed for StartStopped"}
	}
	id := te.Instances[0].ID
	start := time.Now()
	c.Logger.Info("ssm: starting the target", "instance", id, "runbook", StartRunbook)
	if _, err := sa.StartAutomationExecution(ctx, &ssmsdk.StartAutomationExecutionInput{
		DocumentName: aws.String(StartRunbook),
		Parameters:   map[string][]string{"InstanceId": {id}},
	}); err != nil {
		return Instance{}, &APIError{Op: "StartAutomationExecution", Err: err}
	}
	wctx, cancel := context.WithTimeout(ctx, c.StartTimeout)
	defer cancel()
	tick := time.NewTicker(c.StartPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return Instance{}, ctx.Err()
			}
			last := te.Instances
			if x, err := describeTarget(ctx, api, id); err == nil {
				last = []Instance{x}
			}
			return Instance{}, &TargetError{Target: c.Target, Err: ErrTargetOffline, Instances: last,
				Started: fmt.Sprintf("started %s with %s, but its agent was not Online within %v", id, StartRunbook, c.StartTimeout)}
		case <-tick.C:
		}
		x, err := describeTarget(wctx, api, id)
		if err == nil {
			x.StartedIn = time.Since(start)
			c.Logger.Info("ssm: target started", "instance", id, "took", x.StartedIn)
			return x, nil
		}
		if !errors.Is(err, ErrTargetOffline) && !errors.Is(err, ErrNoTarget) && wctx.Err() == nil {
			return Instance{}, err
		}
	}
}

func describeTarget(ctx context.Context, api API, target string) (Instance, error) {
	ia, ok := api.(InstanceAPI)
	if !ok {
		return Instance{}, &ConfigError{"API", "does not implement DescribeInstanceInformation (ssm.InstanceAPI), needed for tag targets and CheckTarget"}
	}
	in := &ssmsdk.DescribeInstanceInformationInput{MaxResults: aws.Int32(50)}
	if IsSelector(target) {
		k, v, err := ParseSelector(target)
		if err != nil {
			return Instance{}, err
		}
		in.Filters = []types.InstanceInformationStringFilter{{Key: aws.String("tag:" + k), Values: []string{v}}}
	} else {
		in.Filters = []types.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: []string{target}}}
	}
	var all []Instance
	for page := 0; ; page++ {
		out, err := ia.DescribeInstanceInformation(ctx, in)
		if err != nil {
			return Instance{}, &APIError{Op: "DescribeInstanceInformation", Err: err}
		}
		for _, ii := range out.InstanceInformationList {
			x := Instance{
				ID:           aws.ToString(ii.InstanceId),
				PingStatus:   string(ii.PingStatus),
				ComputerName: aws.ToString(ii.ComputerName),
				AgentVersion: aws.ToString(ii.AgentVersion),
			}
			if ii.LastPingDateTime != nil {
				x.LastPingTime = *ii.LastPingDateTime
			}
			all = append(all, x)
		}
		if aws.ToString(out.NextToken) == "" || page == maxDescribePages-1 {
			break
		}
		in.NextToken = out.NextToken
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	var online []Instance
	for _, x := range all {
		if x.PingStatus == PingOnline {
			online = append(online, x)
		}
	}
	switch {
	case len(online) == 1:
		return online[0], nil
	case len(online) > 1:
		return Instance{}, &TargetError{Target: target, Err: ErrAmbiguousTarget, Instances: all}
	case len(all) > 0:
		return Instance{}, &TargetError{Target: target, Err: ErrTargetOffline, Instances: all}
	default:
		return Instance{}, &TargetError{Target: target, Err: ErrNoTarget}
	}
}
