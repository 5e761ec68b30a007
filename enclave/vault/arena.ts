/**
 * The arena a device's batches take their short-lived bytes from (opaque/bytes.ts `ByteArena`):
 * each op's opened request, its stored record's secret fields, its new blob, its audit events, its
 * answer (encoded, then sealed), and the login state on its way into the session table. All of
 * them are done with when the batch is (its Commit or Abort: batch.ts holds the op's `Effects`
 * until then); what outlives a batch is copied out of them (the session table's slots, the
 * registration id a login session keeps, the token cache's text, the stage's fields, which the
 * codec copies: CLIENT_REQUEST_VIEWS). One arena per device: a device is a thread (or process)
 * of its own, with its own instance of this module.
 */
import { ByteArena } from '../opaque/bytes.ts';

export const batchBytes = new ByteArena();
