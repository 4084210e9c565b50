package ssmtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	ictypes "github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	ssmsdk "github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"github.com/jumpless/jumpless/ssm/ssmtest"
)

// TestCredentialAPIsCheckSigV4 signs each new API with a wrong secret key,
// and for the wrong service, and expects AWS's authentication errors.
func TestCredentialAPIsCheckSigV4(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{Secrets: map[string]string{"s": `{"username":"u","password":"p"}`}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	akid, _ := srv.Credentials()
	forged := srv.AWSConfig()
	forged.Credentials = credentials.NewStaticCredentialsProvider(akid, "wrong-secret", "")
	check := func(name string, err error, code string) {
		t.Helper()
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != code {
			t.Errorf("%s: got %v, want %s", name, err, code)
		}
	}
	_, err = secretsmanager.NewFromConfig(forged).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("s")})
	check("GetSecretValue, wrong key", err, "InvalidSignatureException")
	_, err = ec2instanceconnect.NewFromConfig(forged).SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String("i-0123456789abcdef0"), InstanceOSUser: aws.String("ec2-user"), SSHPublicKey: aws.String("x")})
	check("SendSSHPublicKey, wrong key", err, "InvalidSignatureException")
	_, err = ssmsdk.NewFromConfig(forged).DescribeInstanceInformation(ctx, &ssmsdk.DescribeInstanceInformationInput{})
	check("DescribeInstanceInformation, wrong key", err, "InvalidSignatureException")
	// Signed with the right key for the SSM service, sent to Secrets Manager.
	body := `{"SecretId":"s"}`
	req, _ := http.NewRequest("POST", srv.URL()+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	sum := sha256.Sum256([]byte(body))
	creds, _ := srv.AWSConfig().Credentials.Retrieve(ctx)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ssm", srv.Region(), time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "InvalidSignatureException") || !strings.Contains(string(b), "secretsmanager") {
		t.Errorf("signed for ssm, sent to secretsmanager: %d %s", resp.StatusCode, b)
	}
	if srv.SecretFetches("s") != 0 {
		t.Fatal("a forged request fetched the secret")
	}
}

// TestCredentialAPIErrorsHaveAWSShape: the SDK decodes the emulator's
// errors into its typed errors.
func TestCredentialAPIErrorsHaveAWSShape(t *testing.T) {
	srv, err := ssmtest.NewServer(ssmtest.Config{Targets: map[string]string{"i-0123456789abcdef0": "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	_, err = secretsmanager.NewFromConfig(srv.AWSConfig()).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("nope")})
	var rnf *smtypes.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Errorf("GetSecretValue of a missing secret: %v", err)
	}
	ic := ec2instanceconnect.NewFromConfig(srv.AWSConfig(), func(o *ec2instanceconnect.Options) { o.RetryMaxAttempts = 1 })
	in := &ec2instanceconnect.SendSSHPublicKeyInput{InstanceId: aws.String("i-0123456789abcdef0"), InstanceOSUser: aws.String("ec2-user"), SSHPublicKey: aws.String("not a key")}
	_, err = ic.SendSSHPublicKey(ctx, in)
	var ia *ictypes.InvalidArgsException
	if !errors.As(err, &ia) {
		t.Errorf("bad key: %v", err)
	}
	srv.SetAPIFault(ssmtest.APIFault{Operation: "SendSSHPublicKey", Code: "ThrottlingException", Count: 1})
	_, err = ic.SendSSHPublicKey(ctx, in)
	var th *ictypes.ThrottlingException
	if !errors.As(err, &th) {
		t.Errorf("throttled: %v", err)
	}
	srv.SetSecret("s", "v1")
	srv.SetSecret("s", "v2")
	out, err := secretsmanager.NewFromConfig(srv.AWSConfig()).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(srv.SecretARN("s"))})
	if err != nil || aws.ToString(out.SecretString) != "v2" || !strings.Contains(aws.ToString(out.ARN), ":secret:s-") {
		t.Fatalf("rotated secret by ARN: %v %v", out, err)
	}
}
