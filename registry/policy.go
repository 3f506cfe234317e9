package registry

import (
	"encoding/json"
	"strings"

	"backupstore/fault"
)

// PolicyRequest names what the policy is for.
type PolicyRequest struct {
	Bucket    string
	Prefix    string // optional: scope object actions to prefix/*
	KMSKeyARN string // optional
}

// Policy is a least-privilege IAM policy plus the advice it leaves out.
type Policy struct {
	JSON          string
	Advice        []string
	LifecycleJSON string
}

type statement struct {
	Sid       string         `json:"Sid"`
	Effect    string         `json:"Effect"`
	Action    []string       `json:"Action"`
	Resource  []string       `json:"Resource"`
	Condition map[string]any `json:"Condition,omitempty"`
}

// IAMPolicy returns the policy with exactly the actions the service uses:
// s3:GetBucketLocation and s3:ListBucket on the bucket; s3:PutObject,
// s3:GetObject and s3:DeleteObject on its objects (under the prefix, if any);
// kms:GenerateDataKey and kms:Decrypt on the key when one is given.
// s3:AbortMultipartUpload is advised, not required: without it the service
// still works and reports the upload ids it could not abort.
func IAMPolicy(req PolicyRequest) (*Policy, error) {
	if err := collect(checkBucket(req.Bucket), checkPrefix(req.Prefix), checkKMSARN(req.KMSKeyARN)); err != nil {
		return nil, err
	}
	bucketARN := "arn:aws:s3:::" + req.Bucket
	objects := bucketARN + "/*"
	if req.Prefix != "" {
		objects = bucketARN + "/" + req.Prefix + "/*"
	}
	list := statement{Sid: "BackupstoreBucket", Effect: "Allow",
		Action: []string{"s3:GetBucketLocation", "s3:ListBucket"}, Resource: []string{bucketARN}}
	if req.Prefix != "" {
		list = statement{Sid: "BackupstoreBucketLocation", Effect: "Allow",
			Action: []string{"s3:GetBucketLocation"}, Resource: []string{bucketARN}}
	}
	stmts := []statement{list}
	if req.Prefix != "" {
		stmts = append(stmts, statement{Sid: "BackupstoreList", Effect: "Allow",
			Action: []string{"s3:ListBucket"}, Resource: []string{bucketARN},
			Condition: map[string]any{"StringLike": map[string][]string{"s3:prefix": {req.Prefix + "/*"}}}})
	}
	stmts = append(stmts, statement{Sid: "BackupstoreObjects", Effect: "Allow",
		Action: []string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}, Resource: []string{objects}})
	if req.KMSKeyARN != "" {
		stmts = append(stmts, statement{Sid: "BackupstoreKMS", Effect: "Allow",
			Action: []string{"kms:GenerateDataKey", "kms:Decrypt"}, Resource: []string{req.KMSKeyARN}})
	}
	doc, err := json.MarshalIndent(map[string]any{"Version": "2012-10-17", "Statement": stmts}, "", "  ")
	if err != nil {
		return nil, err
	}
	lifecycle, _ := json.MarshalIndent(map[string]any{"Rules": []map[string]any{{
		"ID": "backupstore-abort-incomplete-multipart", "Status": "Enabled",
		"Filter":                         map[string]string{"Prefix": strings.TrimSuffix(req.Prefix+"/", "/")},
		"AbortIncompleteMultipartUpload": map[string]int{"DaysAfterInitiation": 7},
	}}}, "", "  ")
	advice := []string{
		"Add s3:AbortMultipartUpload on " + objects + ": without it, uploads that fail leave their parts in the bucket (billed as storage) until removed; backupstore marks such uploads abandoned and logs their S3 upload ids.",
		"Add a lifecycle rule AbortIncompleteMultipartUpload (lifecycle_json below, e.g. `aws s3api put-bucket-lifecycle-configuration --bucket " + req.Bucket + " --lifecycle-configuration file://lifecycle.json`) so orphaned parts are removed even when abort is denied or backupd crashes.",
	}
	if req.KMSKeyARN == "" {
		advice = append(advice, "With SSE-KMS, pass the key's ARN: the policy then also needs kms:GenerateDataKey (writes) and kms:Decrypt (reads and multipart uploads) on it.")
	}
	return &Policy{JSON: string(doc), Advice: advice, LifecycleJSON: string(lifecycle)}, nil
}

func checkKMSARN(arn string) *fault.Violation {
	if arn == "" {
		return nil
	}
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":kms:") || len(arn) > 2048 || !kmsRE.MatchString(arn) {
		return &fault.Violation{Field: "kms_key_arn", Description: "must be a KMS key ARN, arn:aws:kms:REGION:ACCOUNT:key/ID"}
	}
	return nil
}
