// A real OpenID provider (npm oidc-provider) on this machine for the single sign-on
// browser test: its own sign-in and consent pages (dev interactions: any password), code
// flow with PKCE, userinfo with groups, RP-initiated logout. Users are the login names
// below; each has groups that Palisade maps to roles.
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT ?? 3120);
const palisade = process.env.PALISADE_ORIGIN ?? 'http://127.0.0.1:3107';

const users = {
  casey: { name: 'Casey Security', groups: ['palisade-security', 'everyone'] },
  mallory: { name: 'Mallory Contractor', groups: ['contractors'] },
};

const configuration = {
  clients: [{
    client_id: 'palisade-e2e',
    client_secret: 'e2e-client-secret-0123456789',
    redirect_uris: [`${palisade}/auth/oidc/corp/callback`],
    post_logout_redirect_uris: [`${palisade}/login?notice=signed-out`],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@idp.example`, email_verified: true, name: user.name, groups: user.groups };
      },
    };
  },
  cookies: { keys: ['palisade e2e provider cookie key'] },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
};

const provider = new Provider(`http://127.0.0.1:${port}`, configuration);
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on http://127.0.0.1:${port}`);
});
