// A real OpenID provider (npm oidc-provider) issuing access tokens to machines: the
// client-credentials grant, with JWT access tokens (RS256, audience `pets`) for the
// resource `https://pets.palisade.test`. The agent end-to-end test (server/tests/
// agent_gateway.rs) gets tokens here and the agent verifies them against this JWKS.
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT ?? 3121);
const resource = 'https://pets.palisade.test';

const configuration = {
  clients: [{
    client_id: 'pets-reader',
    client_secret: 'pets-reader-secret-0123456789',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'pets:read pets:write',
  }],
  scopes: ['pets:read', 'pets:write'],
  ttl: { ClientCredentials: 600 },
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Error(`unknown resource ${indicator}`);
        return {
          scope: 'pets:read pets:write',
          audience: 'pets',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
};

const provider = new Provider(`http://127.0.0.1:${port}`, configuration);
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on http://127.0.0.1:${port}`);
});
