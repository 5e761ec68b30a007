/**
 * Credentials out of what the command line prints: `scrubCredentials` replaces the user
 * information of every URL in a text (`postgres://user:password@host/db` becomes
 * `postgres://***@host/db`) and the value of password query parameters (`?password=`,
 * `sslpassword=`, `pass=`) with `***`. Used on every URL `bkv serve` prints and on every error
 * message the CLI prints (storage errors already leave the URL out; this is the second line).
 */
const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)[^\s'"<>]*@/gi;
const PASSWORD_PARAM = /([?&;](?:ssl)?pass(?:word)?=)[^&;#\s'"<>]*/gi;

export function scrubCredentials(text: string): string {
  return text.replace(USERINFO, '$1***@').replace(PASSWORD_PARAM, '$1***');
}
