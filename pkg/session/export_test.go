package session

// UseTwoStepGet makes r resolve the session pointer with a separate command,
// as it does against Redis Cluster, so that path also runs against a
// standalone test server.
func UseTwoStepGet(r *Redis) { r.twoStepGet = true }

// TwoStepGet reports whether r resolves session pointers with a separate
// command (required in Redis Cluster).
func TwoStepGet(r *Redis) bool { return r.twoStepGet }
