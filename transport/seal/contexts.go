package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
)

// InputContext is the wrap context of a job's content key, wrapped by the
// client for the slave that runs the job.
func InputContext(jobID string) []byte { return Context(jobID, "input") }

// SubmitInputContext is the wrap context of a job's content key wrapped
// by the client in its Submit, before the master named the job: it is
// bound to nonce, 32 random bytes the client draws per job and the slave
// receives in the Assign. It never equals an InputContext (three parts,
// not two).
func SubmitInputContext(nonce []byte) []byte { return Context("submit", string(nonce), "input") }

// OutputContext is the wrap context of the output key of one attempt of a
// job, wrapped by the slave for the client's ephemeral key. Besides the
// job, the purpose and the attempt it holds a value derived from the job's
// content key, which only the client and the slave know: anyone can wrap a
// key for the client's public key, but only a holder of the content key can
// make a wrap the client accepts, so a master cannot substitute output of
// its own.
func OutputContext(contentKey []byte, jobID string, attempt int) []byte {
	mac := hmac.New(sha256.New, contentKey)
	mac.Write([]byte("kiln output key binding v1"))
	return Context(jobID, "output", strconv.Itoa(attempt), string(mac.Sum(nil)))
}
