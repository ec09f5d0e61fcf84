// Package browser drives Debian's headless Chromium (through chromedp) across
// the pages a person sees: the OpenID provider's login form, the page the
// upstream serves behind the cookie login, and the façade's consent page.
// The scripted HTTP login the other suites use cannot catch what only a
// browser enforces (cookie attributes, Content-Security-Policy form-action on
// the post-consent redirect, real form submission). It has no non-test code;
// this file only gives the package its documentation.
package browser
