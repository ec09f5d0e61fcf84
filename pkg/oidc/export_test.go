package oidc

import "time"

// SetBackoff shortens Run's retry delays for tests.
func SetBackoff(rp *RelyingParty, lo, hi time.Duration) {
	rp.minBackoff, rp.maxBackoff = lo, hi
}
