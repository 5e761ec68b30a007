#!/usr/bin/env node
// The `bkv` command: registers the TypeScript loader, then runs host/cli/bkv.ts.
import { register } from 'tsx/esm/api';

register();
await import('../host/cli/bkv.ts');
