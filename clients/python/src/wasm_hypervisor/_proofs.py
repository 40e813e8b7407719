"""The receipt's ``tlog_proof`` (protocol v1.2 §T4): fetched from ``GET
/tlog/proof/{id}`` right after the execution, checked under the server's note key
before it goes into the receipt, and the policy an offline ``verify`` is given."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Optional, Tuple, Union

from ._http import Http, response_error
from .errors import ConnectionFailedError, ProtocolError, ResponseError
from .receipt import Receipt, check_receipt_offline
from .tlog import Policy, VerifierKey

#: What ``GET /tlog/proof/{id}`` is asked again for, with ``Retry-After``, within
#: the client's :class:`Retries`: a proof not yet covered by a published
#: checkpoint (404 ``not_yet_published``, v1.2 §T5), and the usual 429 and 503.
PROOF_RETRIED_STATUSES = (404, 429, 503)

PolicyLike = Union[Policy, str, bytes]


def fetch_tlog_proof(http: Http, receipt: Receipt, note_key: VerifierKey) -> Tuple[Optional[str], Optional[str]]:
    """(the proof's text, ``None``) once it verified for ``receipt`` under
    ``note_key`` as a ``quorum none`` policy; (``None``, why) when none could be
    had (not yet published within the retry bound, an error answer, no
    connection): the execution is done and logged, its receipt still verifies
    online. A proof that does not verify raises :class:`ProtocolError`."""
    path = "/tlog/proof/" + urllib.parse.quote(receipt.execution_id, safe="")
    try:
        status, headers, data = http.request(
            "GET",
            path,
            idempotent=True,
            retry_statuses=PROOF_RETRIED_STATUSES,
            retry_if=lambda error: error.status != 404 or error.code == "not_yet_published",
        )
    except ConnectionFailedError as error:
        return None, f"GET {path} failed: {error}"
    if status != 200:
        refusal: ResponseError = response_error(status, headers, data)
        return None, f"GET {path}: {refusal}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the tlog-proof is not UTF-8") from None
    candidate = dataclasses.replace(receipt, tlog_proof=text)
    failed = [check for check in check_receipt_offline(candidate, Policy.single_log(note_key)) if not check.ok]
    if failed:
        raise ProtocolError(f"the server's tlog-proof does not verify: {failed[0].name}: {failed[0].error}")
    return text, None


def offline_policy(policy: Optional[PolicyLike], note_key: Optional[Union[str, VerifierKey]]) -> Optional[Policy]:
    """The policy an offline verification uses: ``policy`` (a :class:`Policy` or a
    tlog-policy file's text), or ``log <note_key>`` / ``quorum none``; ``None`` for
    an online one. Raises ``ValueError`` for both, or for a malformed one."""
    if policy is not None and note_key is not None:
        raise ValueError("give a policy or a note key, not both")
    if note_key is not None:
        return Policy.single_log(note_key)
    if policy is None or isinstance(policy, Policy):
        return policy
    return Policy.parse(policy)
