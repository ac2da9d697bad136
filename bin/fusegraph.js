#!/usr/bin/env node
// FuseGraph runs its TypeScript sources directly through tsx, so there is no build step for the engine and server.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../server/cli.ts');
process.exitCode = await main(process.argv.slice(2));
