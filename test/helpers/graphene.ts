/**
 * graphene-pk11 (a PKCS#11 application the project does not write) over one of our modules: the
 * start every graphene test shares, a token initialized in the first free slot, its user PIN set
 * by the SO, and an R/W session logged in as the user.
 */
import * as graphene from 'graphene-pk11';
import { expect } from 'vitest';
import type * as P from '../../enclave/api/pkcs11.ts';
import { SO_PIN, USER_PIN } from './tokens.ts';

export function grapheneUserSession(lib: P.Pkcs11): { mod: graphene.Module; slot: graphene.Slot; session: graphene.Session } {
  const mod = new graphene.Module(lib as unknown as ConstructorParameters<typeof graphene.Module>[0]);
  mod.initialize();
  mod.getSlots(0).initToken(SO_PIN, 'graphene');
  const slot = mod.getSlots(true).items(0);
  expect(slot.getToken().label.trim()).toBe('graphene');
  const flags = graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION;
  const so = slot.open(flags);
  so.login(SO_PIN, graphene.UserType.SO);
  so.initPin(USER_PIN);
  so.logout();
  so.close();
  const session = slot.open(flags);
  session.login(USER_PIN, graphene.UserType.USER);
  return { mod, slot, session };
}
