package config

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAudit(t *testing.T) {
	tests := []struct {
		name string
		keys []string
		// wantErrs are texts the errors must contain, in order; nil: valid.
		wantErrs []string
	}{
		{name: "defaults", keys: Defaults().Audit.RedactKeys},
		{name: "none", keys: nil},
		{name: "mixed case and separators", keys: []string{"X-Api-Key", "db_password", " token "}},
		{name: "empty", keys: []string{"password", ""}, wantErrs: []string{`entry 2 ("")`}},
		{name: "blank", keys: []string{"  "}, wantErrs: []string{`entry 1 ("  ")`}},
		{name: "separators only", keys: []string{"-", "token", "_"}, wantErrs: []string{`entry 1 ("-")`, `entry 3 ("_")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := validateAudit(&AuditConfig{RedactKeys: tt.keys}, root.Child("audit"))
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errors %v, want %d", errs, len(tt.wantErrs))
			}
			for i, err := range errs {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Path != "audit.redact_keys" {
					t.Errorf("error %v is not about audit.redact_keys", err)
				}
				if !strings.Contains(err.Error(), tt.wantErrs[i]) {
					t.Errorf("error %q does not contain %q", err, tt.wantErrs[i])
				}
			}
		})
	}
}

// The check runs as part of Validate.
func TestValidateRefusesEmptyRedactKey(t *testing.T) {
	c := validOIDC()
	c.Audit.RedactKeys = []string{"password", " "}
	fes := fieldErrors(t, c.Validate())
	if len(fes) != 1 || fes[0].Path != "audit.redact_keys" {
		t.Errorf("errors = %v, want one about audit.redact_keys", fes)
	}
}
