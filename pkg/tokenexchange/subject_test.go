package tokenexchange

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

func TestCallerSubject(t *testing.T) {
	const issuer = "https://idp.example"
	bearerCtx := func(raw string) func(context.Context) context.Context {
		return func(ctx context.Context) context.Context {
			tok := &bearer.Token{Subject: "u-bearer", Issuer: "https://idp.example/"}
			ctx = identity.NewContext(ctx, &identity.Identity{Subject: tok.Subject, Method: bearer.Method})
			ctx = bearer.NewContext(ctx, tok)
			if raw != "" {
				ctx = bearer.NewRawContext(ctx, raw)
			}
			return ctx
		}
	}
	cookieCtx := func(ctx context.Context) context.Context {
		return identity.NewContext(ctx, &identity.Identity{Subject: "u-cookie", Method: "cookie"})
	}
	tests := []struct {
		name               string
		bearerFromProvider bool
		ctx                func(context.Context) context.Context
		sessionToken       string
		want               Subject
		wantErr            error
	}{
		{name: "external-mode bearer caller", bearerFromProvider: true, ctx: bearerCtx("provider-at"),
			want: Subject{Issuer: "https://idp.example/", Subject: "u-bearer", Token: "provider-at", TokenType: TokenTypeAccessToken}},
		{name: "bearer caller without the raw token", bearerFromProvider: true, ctx: bearerCtx(""), wantErr: ErrNoSubjectToken},
		{name: "façade bearer caller", ctx: bearerCtx("facade-at"), wantErr: ErrFacadeCaller},
		{name: "cookie caller", ctx: cookieCtx, sessionToken: "session-at",
			want: Subject{Issuer: issuer, Subject: "u-cookie", Token: "session-at", TokenType: TokenTypeAccessToken}},
		{name: "cookie caller, provider issued no access token", ctx: cookieCtx, wantErr: ErrNoSubjectToken},
		{name: "bypass caller", ctx: func(ctx context.Context) context.Context {
			return identity.NewContext(ctx, &identity.Identity{Subject: "dev", Method: "bypass"})
		}, wantErr: ErrNoSubjectToken},
		{name: "no caller", ctx: func(ctx context.Context) context.Context { return ctx }, sessionToken: "stray", wantErr: ErrNoSubjectToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := callerSubject(issuer, tt.bearerFromProvider, func(context.Context) (string, bool) {
				return tt.sessionToken, tt.sessionToken != ""
			})
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r = r.WithContext(tt.ctx(r.Context()))
			got, err := src(r)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("subject = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			if errors.Is(err, ErrFacadeCaller) && !errors.Is(err, ErrNoSubjectToken) {
				t.Fatal("ErrFacadeCaller does not wrap ErrNoSubjectToken")
			}
		})
	}
}
