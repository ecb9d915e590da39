package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// kvError is a Key Vault error response:
// {"error":{"code","message","innererror":{"code"}}}.
type kvError struct {
	status    int
	code      string
	message   string
	inner     string
	challenge bool // add WWW-Authenticate (401)
}

type kvErrorBody struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError *struct {
			Code string `json:"code"`
		} `json:"innererror,omitempty"`
	} `json:"error"`
}

func (k *kvError) write(w http.ResponseWriter, challenge string) {
	var b kvErrorBody
	b.Error.Code, b.Error.Message = k.code, k.message
	if k.inner != "" {
		b.Error.InnerError = &struct {
			Code string `json:"code"`
		}{k.inner}
	}
	if k.challenge && challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSON(w, k.status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// Messages of the service (see the package documentation for the approximated ones).
const (
	msgMissingToken   = "AKV10000: Request is missing a Bearer or PoP token."
	msgBadSignature   = "AKV10000: Token signature validation failed."
	msgTokenExpired   = "[TokenExpired] Error validating token: 'S2S12086'."
	msgTokenNotYet    = "Token not yet valid."
	helpForbidden     = "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
	helpNotFound      = "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
	msgThrottled      = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
	recoveryLevel     = "Recoverable+Purgeable"
	recoverableDays   = 90
	errUnauthorized   = "Unauthorized"
	errForbidden      = "Forbidden"
	innerForbiddenPol = "ForbiddenByPolicy"
)

func errUnauth(msg string) *kvError {
	return &kvError{status: http.StatusUnauthorized, code: errUnauthorized, message: msg, challenge: true}
}

func errAudience(expected, found string) *kvError {
	return errUnauth(fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", expected, found))
}

func errIssuer(expected, found string) *kvError {
	return errUnauth(fmt.Sprintf("AKV10032: Invalid issuer. Expected one of %s, found %s.", expected, found))
}

func errUnknownKey(header string) *kvError {
	return errUnauth(fmt.Sprintf("AKV10046: Unable to resolve the key used for signature validation. EncodedJwtHeader: '%s'.", header))
}

// singular names the object types in messages.
var singular = map[ObjectType]string{ObjectSecret: "secret", ObjectKey: "key", ObjectCertificate: "certificate"}

// notFoundCode is SecretNotFound, KeyNotFound or CertificateNotFound.
var notFoundCode = map[ObjectType]string{ObjectSecret: "SecretNotFound", ObjectKey: "KeyNotFound", ObjectCertificate: "CertificateNotFound"}

func errObjectNotFound(typ ObjectType, nameOrID string) *kvError {
	article := "A"
	return &kvError{status: http.StatusNotFound, code: notFoundCode[typ], message: fmt.Sprintf(
		"%s %s with (name/id) %s was not found in this key vault. If you recently deleted this %s you may be able to recover it using the correct recovery command. %s",
		article, singular[typ], nameOrID, singular[typ], helpNotFound)}
}

func errDisabled(typ ObjectType) *kvError {
	inner := map[ObjectType]string{ObjectSecret: "SecretDisabled", ObjectKey: "KeyDisabled", ObjectCertificate: "CertificateDisabled"}[typ]
	return &kvError{status: http.StatusForbidden, code: errForbidden, inner: inner,
		message: fmt.Sprintf("Operation get is not allowed on a disabled %s.", singular[typ])}
}

func errPolicy(c *accessClaims, typ ObjectType, perm, vaultName, location string) *kvError {
	return &kvError{status: http.StatusForbidden, code: errForbidden, inner: innerForbiddenPol, message: fmt.Sprintf(
		"The user, group or application 'appid=%s;oid=%s;iss=%s' does not have %s %s permission on key vault '%s;location=%s'. %s",
		c.AppID, c.OID, c.Issuer, typ, perm, vaultName, location, helpForbidden)}
}

func errBadParameter(msg string) *kvError {
	return &kvError{status: http.StatusBadRequest, code: "BadParameter", message: msg}
}

func errVaultNotFound(host string) *kvError {
	return &kvError{status: http.StatusNotFound, code: "VaultNotFound", message: fmt.Sprintf(
		"No vault answers to host %s in this emulator (in Azure its name would not resolve). Add it to the seed.", host)}
}

func errFault(status int) *kvError {
	switch status {
	case http.StatusTooManyRequests:
		return &kvError{status: status, code: "Throttled", message: msgThrottled}
	case http.StatusInternalServerError:
		return &kvError{status: status, code: "InternalServerError", message: "An unexpected error occurred. (injected fault)"}
	case http.StatusServiceUnavailable:
		return &kvError{status: status, code: "ServiceUnavailable", message: "The service is temporarily unavailable. (injected fault)"}
	}
	return &kvError{status: status, code: http.StatusText(status), message: "Injected fault."}
}
