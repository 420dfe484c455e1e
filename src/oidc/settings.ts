/**
 * What a Provider is given: the few settings of the configuration that talking to the issuer needs,
 * and the discovery document cached with the token state. Mapped from a Config by
 * ../core/setup.ts (providerSettings), so that nothing here reads the whole configuration.
 */
import type { TokenEndpointAuthMethod } from "../config/rules.ts";

export interface ProviderSettings {
  issuer: string;
  clientId: string;
  /** Asked for in every grant; a user sign-in always adds `openid`. */
  scopes: string[] | undefined;
  timeoutSeconds: number;
  /** Seconds an access token is taken to last when the provider does not say. */
  defaultTokenLifetime: number;
  tokenEndpointAuthMethod: TokenEndpointAuthMethod | undefined;
  /** For messages and hints: the configuration file and the credential files it names. */
  configPath: string;
  clientSecretFile: string | undefined;
  clientKeyFile: string | undefined;
}

/** A discovery document as cached in the token state. */
export interface CachedDiscovery {
  fetched_at: string;
  metadata: Record<string, unknown>;
}
