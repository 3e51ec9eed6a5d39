import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.io.Writer;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.cert.Certificate;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.X509TrustManager;

import org.bouncycastle.asn1.ASN1Encodable;
import org.bouncycastle.asn1.est.AttrOrOID;
import org.bouncycastle.asn1.est.CsrAttrs;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.Extensions;
import org.bouncycastle.asn1.x509.ExtensionsGenerator;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.est.CACertsResponse;
import org.bouncycastle.est.CSRRequestResponse;
import org.bouncycastle.est.ESTAuth;
import org.bouncycastle.est.ESTException;
import org.bouncycastle.est.ESTHijacker;
import org.bouncycastle.est.ESTRequest;
import org.bouncycastle.est.ESTRequestBuilder;
import org.bouncycastle.est.ESTResponse;
import org.bouncycastle.est.ESTService;
import org.bouncycastle.est.EnrollmentResponse;
import org.bouncycastle.est.HttpAuth;
import org.bouncycastle.est.jcajce.ChannelBindingProvider;
import org.bouncycastle.est.jcajce.JcaJceUtils;
import org.bouncycastle.est.jcajce.JsseESTServiceBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.jsse.BCSSLConnection;
import org.bouncycastle.jsse.BCSSLSocket;
import org.bouncycastle.jsse.provider.BouncyCastleJsseProvider;
import org.bouncycastle.openssl.PEMKeyPair;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;
import org.bouncycastle.pkcs.PKCS10CertificationRequest;
import org.bouncycastle.pkcs.PKCS10CertificationRequestBuilder;
import org.bouncycastle.pkcs.jcajce.JcaPKCS10CertificationRequestBuilder;
import org.bouncycastle.util.encoders.Base64;
import org.bouncycastle.util.io.pem.PemObject;
import org.bouncycastle.util.io.pem.PemWriter;

/**
 * Drives Bouncy Castle's EST client (org.bouncycastle.est) against an EST server,
 * for estappliance's interop tests (tests/interop/test_bouncycastle.py).
 *
 * <pre>
 * EstDriver OPTIONS OPERATION    one operation; exit status 0 when it succeeded
 * EstDriver --batch              one operation per line of stdin (OPTIONS OPERATION, tab-separated);
 *                                exit status 0 when all succeeded
 *
 * OPTIONS  --server HOST:PORT --ca CA.pem        the server and its trust anchor (required)
 *          [--label L]                           CA label (/.well-known/est/L/...)
 *          [--user U --password-file F]          HTTP authentication, answered by HttpAuth:
 *          [--auth basic|digest]                 basic: HttpAuth(user, pw); digest: the digest-capable
 *                                                HttpAuth(user, pw, SecureRandom, DigestCalculatorProvider)
 *          [--tls-cert C.pem --tls-key K.pem]    TLS client certificate
 *          [--tls 1.2|1.3]                       SSLContext TLSv1.2 (at most 1.2) or TLSv1.3
 *                                                (default "TLS"; enroll-pop: 1.2, tls-unique needs it)
 *          [--subject DN] [--dns NAME]           CSR subject and subjectAltName dNSName
 *          [--out PREFIX]                        files written: PREFIX.pem, PREFIX.key, ...
 * OPERATION  cacerts | csrattrs | enroll | enroll-pop | reenroll | serverkeygen | enroll-pending
 * </pre>
 *
 * Output, one fact a line: {@code WROTE <kind> <path>}, {@code AUTH <scheme> [algorithm=A] status=<s>} (the
 * Authorization scheme HttpAuth finally sent and the status it got), {@code CHALLENGE <value>} (the
 * WWW-Authenticate values of a final 401), {@code BINDING <name> <protocol> <base64>} (a channel binding
 * handed to simpleEnrollPoP), {@code PENDING notBefore=<ms> now=<ms>} (enroll-pending got a 202: it then waits
 * for a line on stdin before it asks again), {@code CERTS}, {@code ATTR}, {@code OID}, {@code BODY <text>}
 * (an ESTException's body), and last {@code OK <op>} or
 * {@code ERROR <op> <exception class> <ESTException status code, or -> <message>}.
 * Keys are EC P-256, made here.
 */
public final class EstDriver
{
    private static final Provider BC = new BouncyCastleProvider();
    private static final Provider BCJSSE = new BouncyCastleJsseProvider();
    private static BufferedReader stdin;

    public static void main(String[] args)
        throws IOException
    {
        Security.addProvider(BC); // JcaJceUtils' trust manager builds its path with provider "BC"
        stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        boolean ok = true;
        if (args.length == 1 && args[0].equals("--batch"))
        {
            String line;
            while ((line = stdin.readLine()) != null)
            {
                if (!line.trim().isEmpty())
                {
                    ok &= run(line.split("\t"));
                }
            }
        }
        else
        {
            ok = run(args);
        }
        System.exit(ok ? 0 : 1);
    }

    private static boolean run(String[] args)
    {
        String op = "-";
        try
        {
            Options o = Options.parse(args);
            op = o.op;
            switch (o.op)
            {
            case "cacerts": cacerts(o); break;
            case "csrattrs": csrattrs(o); break;
            case "enroll": enroll(o); break;
            case "enroll-pop": enrollPop(o); break;
            case "reenroll": reenroll(o); break;
            case "serverkeygen": serverkeygen(o); break;
            case "enroll-pending": enrollPending(o); break;
            default: throw new IllegalArgumentException("unknown operation " + o.op);
            }
            say("OK " + op);
            return true;
        }
        catch (Exception e)
        {
            String status = "-";
            if (e instanceof ESTException)
            {
                status = Integer.toString(((ESTException)e).getStatusCode());
                String body = readAll(((ESTException)e).getBody());
                if (!body.isEmpty())
                {
                    say("BODY " + oneLine(body));
                }
            }
            String message = oneLine(String.valueOf(e.getMessage()));
            Throwable cause = e.getCause();
            if (cause != null && cause != e)
            {
                message += " [cause " + cause.getClass().getName() + ": " + oneLine(String.valueOf(cause.getMessage())) + "]";
            }
            say("ERROR " + op + " " + e.getClass().getName() + " " + status + " " + message);
            e.printStackTrace();
            return false;
        }
    }

    // -- the operations ------------------------------------------------------------------

    private static void cacerts(Options o)
        throws Exception
    {
        CACertsResponse response = service(o).getCACerts();
        if (!response.hasCertificates())
        {
            throw new IllegalStateException("no certificates in the /cacerts answer");
        }
        X509CertificateHolder[] certs = ESTService.storeToArray(response.getCertificateStore());
        say("CERTS " + certs.length + " trusted=" + response.isTrusted());
        List<PemObject> pems = new ArrayList<>();
        for (X509CertificateHolder cert : certs)
        {
            pems.add(new PemObject("CERTIFICATE", cert.getEncoded()));
        }
        write("cacerts", o.out(".pem"), pems, false);
    }

    private static void csrattrs(Options o)
        throws Exception
    {
        CSRRequestResponse response = service(o).getCSRAttributes();
        if (!response.hasAttributesResponse())
        {
            say("ATTRS none");
            return;
        }
        for (AttrOrOID item : CsrAttrs.getInstance(response.getAttributesResponse().getEncoded()).getAttrOrOIDs())
        {
            if (item.isOid())
            {
                say("OID " + item.getOid());
            }
            else
            {
                StringBuilder line = new StringBuilder("ATTR " + item.getAttribute().getAttrType());
                for (ASN1Encodable value : item.getAttribute().getAttributeValues())
                {
                    line.append(' ').append(value);
                }
                say(line.toString());
            }
        }
    }

    private static void enroll(Options o)
        throws Exception
    {
        KeyPair key = newKey();
        PKCS10CertificationRequest csr = csr(o.subjectName(), o.san(), key).build(signer(key));
        EnrollmentResponse response = service(o).simpleEnroll(false, csr, auth(o));
        writeIssued(o, issued(response), key.getPrivate());
    }

    /** simpleEnrollPoP: Bouncy Castle puts the tls-unique of the connection in challengePassword (TLS 1.2). */
    private static void enrollPop(Options o)
        throws Exception
    {
        KeyPair key = newKey();
        EnrollmentResponse response = service(o).simpleEnrollPoP(false, csr(o.subjectName(), o.san(), key), signer(key), auth(o));
        writeIssued(o, issued(response), key.getPrivate());
    }

    /** simplereenroll authenticated by the TLS client certificate: a new key, the certificate's subject and SAN. */
    private static void reenroll(Options o)
        throws Exception
    {
        if (o.tlsCert == null)
        {
            throw new IllegalArgumentException("reenroll needs --tls-cert and --tls-key");
        }
        X509CertificateHolder current = readCertificate(o.tlsCert);
        Extension san = current.getExtension(Extension.subjectAlternativeName);
        KeyPair key = newKey();
        PKCS10CertificationRequest csr = csr(current.getSubject(), san == null ? null : new Extensions(san), key).build(signer(key));
        EnrollmentResponse response = service(o).simpleEnroll(true, csr, auth(o));
        writeIssued(o, issued(response), key.getPrivate());
    }

    /** serverkeygen: the CSR's key is ours (PREFIX.csr.key); the certified key comes back (PREFIX.key). */
    private static void serverkeygen(Options o)
        throws Exception
    {
        KeyPair csrKey = newKey();
        PKCS10CertificationRequest csr = csr(o.subjectName(), o.san(), csrKey).build(signer(csrKey));
        EnrollmentResponse response = service(o).simpleEnrollWithServersideCreation(csr, auth(o));
        PrivateKeyInfo serverKey = response.getPrivateKeyInfo();
        if (serverKey == null)
        {
            throw new IllegalStateException("no private key in the /serverkeygen answer");
        }
        write("cert", o.out(".pem"), Collections.singletonList(new PemObject("CERTIFICATE", issued(response).getEncoded())), false);
        write("key", o.out(".key"), Collections.singletonList(new PemObject("PRIVATE KEY", serverKey.getEncoded())), true);
        write("csr-key", o.out(".csr.key"), Collections.singletonList(new PemObject("PRIVATE KEY", csrKey.getPrivate().getEncoded())), true);
    }

    /** RFC 7030 4.2.3: a 202 first; after a line on stdin (the operator decided), the same request again. */
    private static void enrollPending(Options o)
        throws Exception
    {
        KeyPair key = newKey();
        PKCS10CertificationRequest csr = csr(o.subjectName(), o.san(), key).build(signer(key));
        ESTService service = service(o);
        EnrollmentResponse first = service.simpleEnroll(false, csr, auth(o));
        if (first.isCompleted())
        {
            throw new IllegalStateException("expected 202 Accepted, got a certificate at once");
        }
        say("PENDING notBefore=" + first.getNotBefore() + " now=" + System.currentTimeMillis());
        if (stdin.readLine() == null)
        {
            throw new EOFException("stdin closed while waiting to ask again");
        }
        EnrollmentResponse second = service.simpleEnroll(first);
        writeIssued(o, issued(second), key.getPrivate());
    }

    // -- Bouncy Castle's EST client, set up ----------------------------------------------

    private static ESTService service(Options o)
        throws Exception
    {
        X509Certificate ca = new JcaX509CertificateConverter().setProvider(BC).getCertificate(readCertificate(o.caFile));
        X509TrustManager[] trust = JcaJceUtils.getCertPathTrustManager(Collections.singleton(new TrustAnchor(ca, null)), null);
        JsseESTServiceBuilder builder = new JsseESTServiceBuilder(o.server, trust);
        builder.withProvider(BCJSSE).withChannelBindingProvider(new TlsBinding()).withTimeout(30000);
        String tls = o.tls != null ? o.tls : (o.op.equals("enroll-pop") ? "1.2" : null);
        if (tls != null)
        {
            builder.withTLSVersion("TLSv" + tls);
        }
        if (o.tlsCert != null)
        {
            builder.withKeyManagers(keyManagers(o.tlsCert, o.tlsKey));
        }
        if (o.label != null)
        {
            builder.withLabel(o.label);
        }
        return builder.build();
    }

    private static ESTAuth auth(Options o)
        throws Exception
    {
        if (o.user == null)
        {
            return null;
        }
        char[] password = new String(Files.readAllBytes(Paths.get(o.passwordFile)), StandardCharsets.UTF_8).trim().toCharArray();
        HttpAuth http;
        switch (o.auth)
        {
        case "basic": http = new HttpAuth(o.user, password); break;
        case "digest": http = new HttpAuth(o.user, password, new SecureRandom(), new JcaDigestCalculatorProviderBuilder().build()); break;
        default: throw new IllegalArgumentException("--auth is basic or digest, not " + o.auth);
        }
        return new ReportingAuth(http);
    }

    /** HttpAuth, and a line telling which Authorization it finally sent and what status that got. */
    private static final class ReportingAuth
        implements ESTAuth
    {
        private final ESTAuth inner;

        ReportingAuth(ESTAuth inner)
        {
            this.inner = inner;
        }

        public void applyAuth(ESTRequestBuilder builder)
        {
            inner.applyAuth(builder);
            final ESTHijacker theirs = builder.build().getHijacker();
            builder.withHijacker((request, source) -> {
                ESTResponse response = theirs.hijack(request, source);
                say("AUTH " + describe(response.getOriginalRequest()) + " status=" + response.getStatusCode());
                if (response.getStatusCode() == 401)
                {
                    Map<String, String[]> headers = response.getHeaders(); // names lower-cased
                    String[] challenges = headers.get("www-authenticate");
                    for (int i = 0; challenges != null && i < challenges.length; i++)
                    {
                        say("CHALLENGE " + challenges[i]);
                    }
                }
                return response;
            });
        }

        private static String describe(ESTRequest request)
        {
            for (Map.Entry<String, String[]> header : request.getHeaders().entrySet())
            {
                if (header.getKey().equalsIgnoreCase("Authorization"))
                {
                    String value = header.getValue()[0];
                    String scheme = value.split(" ", 2)[0];
                    java.util.regex.Matcher m = java.util.regex.Pattern.compile("algorithm=\"?([A-Za-z0-9-]+)").matcher(value);
                    return m.find() ? scheme + " algorithm=" + m.group(1) : scheme;
                }
            }
            return "none";
        }
    }

    /** Channel bindings from BCJSSE's connection: tls-unique (RFC 5929) exists only up to TLS 1.2. */
    private static final class TlsBinding
        implements ChannelBindingProvider
    {
        public boolean canAccessChannelBinding(Socket socket)
        {
            return socket instanceof BCSSLSocket;
        }

        public byte[] getChannelBinding(Socket socket, String binding)
        {
            BCSSLConnection connection = ((BCSSLSocket)socket).getConnection();
            byte[] value = connection == null ? null : connection.getChannelBinding(binding);
            say("BINDING " + binding + " " + ((SSLSocket)socket).getSession().getProtocol() + " "
                + (value == null ? "-" : Base64.toBase64String(value)));
            return value;
        }
    }

    private static KeyManager[] keyManagers(String certFile, String keyFile)
        throws Exception
    {
        X509Certificate cert = new JcaX509CertificateConverter().setProvider(BC).getCertificate(readCertificate(certFile));
        char[] password = "in-memory".toCharArray();
        KeyStore store = KeyStore.getInstance("PKCS12");
        store.load(null, null);
        store.setKeyEntry("client", readPrivateKey(keyFile), password, new Certificate[]{cert});
        KeyManagerFactory factory = KeyManagerFactory.getInstance("PKIX", BCJSSE);
        factory.init(store, password);
        return factory.getKeyManagers();
    }

    // -- keys, CSRs, certificates, files ---------------------------------------------------

    private static KeyPair newKey()
        throws GeneralSecurityException
    {
        KeyPairGenerator generator = KeyPairGenerator.getInstance("EC", BC);
        generator.initialize(new ECGenParameterSpec("secp256r1"));
        return generator.generateKeyPair();
    }

    private static PKCS10CertificationRequestBuilder csr(X500Name subject, Extensions extensions, KeyPair key)
    {
        PublicKey publicKey = key.getPublic();
        PKCS10CertificationRequestBuilder builder = new JcaPKCS10CertificationRequestBuilder(subject, publicKey);
        if (extensions != null)
        {
            builder.addAttribute(PKCSObjectIdentifiers.pkcs_9_at_extensionRequest, extensions);
        }
        return builder;
    }

    private static ContentSigner signer(KeyPair key)
        throws Exception
    {
        return new JcaContentSignerBuilder("SHA256withECDSA").setProvider(BC).build(key.getPrivate());
    }

    /** The one end-entity certificate of a completed enrollment (the answer may add CA certificates). */
    private static X509CertificateHolder issued(EnrollmentResponse response)
    {
        if (!response.isCompleted())
        {
            throw new IllegalStateException("enrollment not completed (202): notBefore=" + response.getNotBefore());
        }
        List<X509CertificateHolder> leaves = new ArrayList<>();
        for (X509CertificateHolder cert : ESTService.storeToArray(response.getStore()))
        {
            BasicConstraints bc = BasicConstraints.fromExtensions(cert.getExtensions());
            if (bc == null || !bc.isCA())
            {
                leaves.add(cert);
            }
        }
        if (leaves.size() != 1)
        {
            throw new IllegalStateException(leaves.size() + " end-entity certificates in the answer, expected 1");
        }
        return leaves.get(0);
    }

    private static void writeIssued(Options o, X509CertificateHolder cert, PrivateKey key)
        throws IOException
    {
        write("cert", o.out(".pem"), Collections.singletonList(new PemObject("CERTIFICATE", cert.getEncoded())), false);
        write("key", o.out(".key"), Collections.singletonList(new PemObject("PRIVATE KEY", key.getEncoded())), true);
    }

    private static void write(String kind, Path path, List<PemObject> objects, boolean secret)
        throws IOException
    {
        Files.deleteIfExists(path);
        if (secret)
        {
            Files.createFile(path, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        }
        try (Writer out = Files.newBufferedWriter(path, StandardCharsets.US_ASCII); PemWriter pem = new PemWriter(out))
        {
            for (PemObject object : objects)
            {
                pem.writeObject(object);
            }
        }
        say("WROTE " + kind + " " + path);
    }

    private static X509CertificateHolder readCertificate(String file)
        throws IOException
    {
        Object object = readPem(file);
        if (!(object instanceof X509CertificateHolder))
        {
            throw new IOException(file + ": no certificate first");
        }
        return (X509CertificateHolder)object;
    }

    private static PrivateKey readPrivateKey(String file)
        throws IOException
    {
        Object object = readPem(file);
        JcaPEMKeyConverter converter = new JcaPEMKeyConverter().setProvider(BC);
        if (object instanceof PrivateKeyInfo)
        {
            return converter.getPrivateKey((PrivateKeyInfo)object);
        }
        if (object instanceof PEMKeyPair)
        {
            return converter.getKeyPair((PEMKeyPair)object).getPrivate();
        }
        throw new IOException(file + ": no unencrypted private key first");
    }

    private static Object readPem(String file)
        throws IOException
    {
        try (Reader in = Files.newBufferedReader(Paths.get(file), StandardCharsets.US_ASCII); PEMParser parser = new PEMParser(in))
        {
            return parser.readObject();
        }
    }

    private static String readAll(InputStream in)
    {
        try
        {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buffer = new byte[4096];
            for (int n; (n = in.read(buffer)) > 0; )
            {
                out.write(buffer, 0, n);
            }
            return new String(out.toByteArray(), StandardCharsets.UTF_8).trim();
        }
        catch (IOException e)
        {
            return "(unreadable: " + e + ")";
        }
    }

    private static String oneLine(String text)
    {
        return text.replaceAll("[\r\n]+", " ").trim();
    }

    private static synchronized void say(String line)
    {
        System.out.println(line);
        System.out.flush();
    }

    /** The options of one operation. */
    private static final class Options
    {
        String server, caFile, label, user, passwordFile, auth = "basic", tlsCert, tlsKey, tls, subject, dns, out, op;

        static Options parse(String[] args)
        {
            Options o = new Options();
            for (int i = 0; i < args.length; i++)
            {
                String name = args[i];
                if (!name.startsWith("--"))
                {
                    if (o.op != null)
                    {
                        throw new IllegalArgumentException("two operations: " + o.op + " and " + name);
                    }
                    o.op = name;
                    continue;
                }
                if (i + 1 >= args.length)
                {
                    throw new IllegalArgumentException(name + " needs a value");
                }
                String value = args[++i];
                switch (name)
                {
                case "--server": o.server = value; break;
                case "--ca": o.caFile = value; break;
                case "--label": o.label = value; break;
                case "--user": o.user = value; break;
                case "--password-file": o.passwordFile = value; break;
                case "--auth": o.auth = value; break;
                case "--tls-cert": o.tlsCert = value; break;
                case "--tls-key": o.tlsKey = value; break;
                case "--tls": o.tls = value; break;
                case "--subject": o.subject = value; break;
                case "--dns": o.dns = value; break;
                case "--out": o.out = value; break;
                default: throw new IllegalArgumentException("unknown option " + name);
                }
            }
            if (o.op == null || o.server == null || o.caFile == null)
            {
                throw new IllegalArgumentException("needs --server, --ca and an operation");
            }
            if ((o.user == null) != (o.passwordFile == null) || (o.tlsCert == null) != (o.tlsKey == null))
            {
                throw new IllegalArgumentException("--user goes with --password-file, --tls-cert with --tls-key");
            }
            return o;
        }

        Path out(String suffix)
        {
            if (out == null)
            {
                throw new IllegalArgumentException(op + " needs --out");
            }
            return Paths.get(out + suffix);
        }

        X500Name subjectName()
        {
            if (subject == null)
            {
                throw new IllegalArgumentException(op + " needs --subject");
            }
            return new X500Name(subject);
        }

        Extensions san()
            throws IOException
        {
            if (dns == null)
            {
                return null;
            }
            ExtensionsGenerator generator = new ExtensionsGenerator();
            generator.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName(GeneralName.dNSName, dns)));
            return generator.generate();
        }
    }
}
