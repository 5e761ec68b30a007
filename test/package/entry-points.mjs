// Run by test/package.test.ts from plain Node in a project that installed the packed tarball:
// the bare import `backup-key-vault`, then every entry point it names. Prints one JSON line.
const bare = await import('backup-key-vault');
const loaded = {};
for (const name of Object.keys(bare.ENTRY_POINTS)) loaded[name] = Object.keys(await import(name)).length;
console.log(JSON.stringify({ bareExports: Object.keys(bare).sort(), loaded }));
