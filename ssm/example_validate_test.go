package ssm_test

import (
	"errors"
	"fmt"

	"github.com/jumpless/jumpless/ssm"
)

// Check a Config before starting anything: Validate makes the checks Dial
// makes, without a network call.
func ExampleConfig_Validate() {
	cfg := ssm.Config{Target: "web-1"} // a host name, not an instance id
	err := cfg.Validate()
	var ce *ssm.ConfigError
	if errors.As(err, &ce) {
		fmt.Println(ce.Field)
	}
	fmt.Println(errors.Is(err, ssm.ErrInvalidConfig))
	// Output:
	// Target
	// true
}
