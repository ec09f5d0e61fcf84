package mcpsession

import "io"

// NewSealerWithNonces is NewSealer drawing nonces from r, for the fuzz
// test, whose seeds must be the same in every fuzzing process.
func NewSealerWithNonces(secret []byte, r io.Reader) (*Sealer, error) {
	s, err := NewSealer(secret)
	if err != nil {
		return nil, err
	}
	s.nonces = r
	return s, nil
}
